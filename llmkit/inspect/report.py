"""Versioned, strict JSON reports and the schema check that readers (and tests) rely on.

A report is a JSON object with a `schema` name (`llmkit.lens`, `llmkit.inspect`), an
integer `version` that changes when a field changes meaning, the llmkit version and the UTC
time it was made, then the tool's own fields. It is written with `allow_nan=False`, so a
NaN that slipped past `finite_or_none` fails loudly instead of producing a file that
strict parsers reject, and atomically, so a crash never leaves half a report.

Schemas are plain dicts in a small subset of JSON Schema (`type`, `properties`,
`required`, `additionalProperties`, `items`, `enum`, `minimum`), checked by `validate`
without a new dependency.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from llmkit import __version__
from llmkit.errors import LlmkitError
from llmkit.fsutil import atomic_write_text


class ReportError(LlmkitError):
    """A report does not match its schema, or holds a value JSON cannot carry strictly."""


def header(schema: str, version: int) -> dict[str, Any]:
    """The fields every report starts with."""
    return {
        "schema": schema,
        "version": version,
        "llmkit_version": __version__,
        "created_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def dumps(report: dict[str, Any]) -> str:
    """Strict JSON text: NaN and Infinity are refused, not written as bare tokens."""
    try:
        return json.dumps(report, allow_nan=False, ensure_ascii=False, indent=1) + "\n"
    except ValueError as e:  # out-of-range float: a value bypassed finite_or_none (a bug)
        raise ReportError(f"report {report.get('schema')!r} holds a non-finite number "
                          f"({e}); every float must go through finite_or_none") from None


def loads_strict(text: str) -> Any:
    """Parse JSON refusing the non-standard NaN / Infinity / -Infinity tokens."""
    def refuse(token: str) -> Any:
        raise ValueError(f"non-standard JSON constant {token}")
    return json.loads(text, parse_constant=refuse)


def write_report(path: Path | str, report: dict[str, Any], schema: dict[str, Any]) -> None:
    """Check `report` against `schema`, then write it to `path` atomically as strict JSON."""
    validate(report, schema)
    atomic_write_text(Path(path), dumps(report))


_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}


def validate(value: Any, schema: dict[str, Any]) -> None:
    """Raise ReportError listing every place where `value` does not match `schema`."""
    problems: list[str] = []
    _check(value, schema, "$", problems)
    if problems:
        shown = "; ".join(problems[:10])
        more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
        raise ReportError(f"report does not match its schema: {shown}{more}")


def _type_ok(value: Any, name: str) -> bool:
    if isinstance(value, bool) and name in ("integer", "number"):
        return False  # JSON booleans are not numbers, though Python's are ints
    return isinstance(value, _TYPES[name])


def _check(value: Any, schema: dict[str, Any], where: str, problems: list[str]) -> None:
    types = schema.get("type")
    if types is not None:
        names = [types] if isinstance(types, str) else list(types)
        if not any(_type_ok(value, n) for n in names):
            problems.append(f"{where}: expected {' or '.join(names)}, got "
                            f"{type(value).__name__} {value!r:.40}")
            return
    if "enum" in schema and value not in schema["enum"]:
        problems.append(f"{where}: {value!r} is not one of {schema['enum']}")
    if "minimum" in schema and _type_ok(value, "number") and value < schema["minimum"]:
        problems.append(f"{where}: {value} is below the minimum {schema['minimum']}")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for key in schema.get("required", []):
            if key not in value:
                problems.append(f"{where}: missing key {key!r}")
        for key, item in value.items():
            if key in props:
                _check(item, props[key], f"{where}.{key}", problems)
            elif schema.get("additionalProperties") is False:
                problems.append(f"{where}: unexpected key {key!r}")
            elif isinstance(schema.get("additionalProperties"), dict):
                _check(item, schema["additionalProperties"], f"{where}.{key}", problems)
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            _check(item, schema["items"], f"{where}[{i}]", problems)
