"""Reading `llmkit.yaml` strictly, and changing single values in it without rewriting it.

YAML lets a key appear twice in one mapping and keeps the last value without a word: a
second `training:` section silently replaces the first. llmkit refuses that, naming both
lines. The file must be UTF-8 (an error names the line and column of the first bad byte).

`write_back` edits values in place (comments, order and quoting of everything else kept),
through the positions the YAML parser reports for each key and value. So it finds a
section or key however it is written (quoted, flow style `{...}`), and it refuses, in one
line, a form it cannot edit. Before the file is replaced, the edited text is parsed again
and must equal the old content with only the requested values changed; after the
replacement the file is read back once more and checked the same way: a value never
lands where the loader does not read it.

Values shown in error messages go through `show`, which stops after a few dozen
characters: a YAML alias bomb expands to gigabytes when printed in full.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import yaml

from llmkit.errors import ConfigError
from llmkit.fsutil import atomic_write_text

SHOW_LIMIT = 60  # characters of a value shown in an error message


def show(value: Any, limit: int = SHOW_LIMIT) -> str:
    """`repr(value)` cut to `limit` characters, without ever building the whole repr.

    Containers are walked element by element until the budget is spent, so a value made of
    nested aliases (billions of elements, few objects) costs `limit` steps, not gigabytes.
    """
    parts: list[str] = []
    budget = limit + 1  # one more than the limit: tells a cut value from an exact fit

    def emit(text: str) -> None:
        nonlocal budget
        parts.append(text[:budget])
        budget -= len(text)

    def walk(v: Any) -> None:
        if budget <= 0:
            return
        if isinstance(v, (list, tuple)):
            emit("[")
            for i, item in enumerate(v):
                if budget <= 0:
                    return
                if i:
                    emit(", ")
                walk(item)
            emit("]")
        elif isinstance(v, dict):
            emit("{")
            for i, (k, item) in enumerate(v.items()):
                if budget <= 0:
                    return
                if i:
                    emit(", ")
                walk(k)
                emit(": ")
                walk(item)
            emit("}")
        elif isinstance(v, (str, bytes)) and len(v) > limit:
            emit(repr(v[: limit + 1]))  # repr of the head only: a huge string stays cheap
        else:
            emit(repr(v))

    walk(value)
    text = "".join(parts)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------


def read_text(path: Path) -> str:
    """The file's text; ConfigError naming the line and column of a byte that is not UTF-8."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        column = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise ConfigError([f"line {line}, column {column}: byte 0x{data[e.start]:02x} is not "
                           f"UTF-8; re-save the file as UTF-8"], str(path)) from None
    return text.removeprefix("\ufeff")  # a byte-order mark some editors add: not content


def parse(text: str, source: str) -> tuple[yaml.Node | None, Any]:
    """The YAML node tree (with positions) and the data of one document.

    Raises:
        ConfigError: not valid YAML (names the line), or a key repeated in one mapping
            (names both lines; every repetition is listed).
    """
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        problems = _repeated_keys(node)
        if problems:
            raise ConfigError(problems, source)
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError([f"not valid YAML at {source}{where}: {problem}"], source) from None
    finally:
        loader.dispose()
    return node, data


def _repeated_keys(root: yaml.Node | None) -> list[str]:
    """One message per key given twice in the same mapping, with the path and both lines."""
    problems: list[str] = []
    seen_nodes: set[int] = set()  # an alias points at a node already checked: visit once
    stack: list[tuple[yaml.Node, str]] = [(root, "")] if root is not None else []
    while stack:
        node, path = stack.pop()
        if id(node) in seen_nodes:
            continue
        seen_nodes.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first_line: dict[Any, int] = {}
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                    name = key.value
                    here = key.start_mark.line + 1
                    if name in first_line:
                        problems.append(
                            f"{path}{name}: given twice, at line {first_line[name]} and line "
                            f"{here}; YAML would silently keep only the second one: merge them "
                            f"into one or delete one")
                    else:
                        first_line[name] = here
                    stack.append((value, f"{path}{name}."))
                else:
                    stack.append((value, path))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((item, path) for item in node.value)
    return problems


# --------------------------------------------------------------------------------------
# Write-back
# --------------------------------------------------------------------------------------


class WriteBackError(ConfigError):
    """`llmkit.yaml` is written in a form that `write_back` cannot edit safely."""


_MISSING = object()


def write_back(path: Path, updates: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Set `section.key` scalars in a YAML file in place, keeping comments and layout.

    A key missing from its section is added to it; a missing section is added at the end.
    The file is replaced atomically, and only when the edited text reads back as the old
    content with exactly these values changed. Returns `{key: (old, new)}` for the keys
    whose value changed (old is None for a key that was missing).

    Raises:
        WriteBackError: the file holds a form that cannot be edited (the message says what
            to change by hand), or the edit would change anything else.
    """
    path = Path(path)
    raw = path.read_bytes()
    bom = "\ufeff" if raw.startswith(b"\xef\xbb\xbf") else ""
    text = read_text(path)
    _, data = parse(text, str(path))
    expected = copy.deepcopy(data) if isinstance(data, dict) else {}
    changed: dict[str, tuple[Any, Any]] = {}
    new_text = text if text.endswith("\n") or not text else text + "\n"
    for dotted, value in updates.items():
        section, _, key = dotted.partition(".")
        old = _get(expected, section, key)
        if old is not _MISSING and type(old) is type(value) and old == value:
            continue
        new_text = _edit(new_text, section, key, value, str(path))
        sec = expected.get(section)
        if not isinstance(sec, dict):
            sec = expected[section] = {}
        sec[key] = value
        changed[dotted] = (None if old is _MISSING else old, value)
    if not changed:
        return changed
    _check_edit(new_text, expected, changed, path, "the edited text")
    atomic_write_text(path, bom + new_text)
    try:
        _check_edit(read_text(path), expected, changed, path, "the file as written")
    except ConfigError:
        atomic_write_text(path, raw.decode("utf-8"))  # put the user's file back
        raise
    return changed


def _get(data: dict[str, Any], section: str, key: str) -> Any:
    sec = data.get(section)
    return sec.get(key, _MISSING) if isinstance(sec, dict) else _MISSING


def _check_edit(text: str, expected: dict[str, Any], changed: dict[str, Any], path: Path,
                what: str) -> None:
    """The text must parse to exactly `expected`: the changed values where the loader reads
    them, and everything else as it was."""
    keys = ", ".join(changed)
    try:
        _, got = parse(text, str(path))
    except ConfigError as e:
        raise WriteBackError([f"writing {keys} would make the file unreadable "
                              f"({'; '.join(e.problems)}); set {keys} by hand"],
                             str(path)) from None
    if got != expected:
        raise WriteBackError([f"writing {keys} in place would not read back as intended "
                              f"({what} differs); nothing was changed: set {keys} by hand"],
                             str(path))


def _edit(text: str, section: str, key: str, value: Any, source: str) -> str:
    """`text` with `section.key` set to `value`, edited at the positions the parser gives."""
    root, _ = parse(text, source)
    if root is None:
        return text + f"{section}:\n  {key}: {format_scalar(value)}\n"
    if not isinstance(root, yaml.MappingNode) or root.flow_style:
        raise WriteBackError([f"the top level is not a block mapping of sections; write it as "
                              f"`{section}:` followed by indented keys, one per line"], source)
    sec = _find(root, section)
    if sec is None:
        return text + f"{section}:\n  {key}: {format_scalar(value)}\n"
    sec_key, sec_value = sec
    where = f"line {sec_key.start_mark.line + 1}"
    if isinstance(sec_value, yaml.ScalarNode) and sec_value.tag == "tag:yaml.org,2002:null":
        # `model:` with nothing under it (or `model: null`): drop the null, add the key
        # on the next line.
        start, end = sec_value.start_mark.index, sec_value.end_mark.index
        eol = _line_end(text, end)
        new_line = f"  {key}: {format_scalar(value)}\n"
        return text[:start] + text[end:eol] + new_line + text[eol:]
    if not isinstance(sec_value, yaml.MappingNode):
        raise WriteBackError([f"{section} ({where}) is not a mapping of keys; write it as "
                              f"`{section}:` followed by indented keys"], source)
    if _is_alias_target(root, sec_value):
        raise WriteBackError([f"{section} ({where}) is shared through a YAML anchor/alias; "
                              f"editing it would change the other places too: set "
                              f"{section}.{key} by hand"], source)
    item = _find(sec_value, key)
    flow = bool(sec_value.flow_style)
    if item is not None:
        key_node, value_node = item
        if not isinstance(value_node, yaml.ScalarNode):
            raise WriteBackError([f"{section}.{key} (line {key_node.start_mark.line + 1}) is "
                                  f"not a single value; set it by hand"], source)
        start, end = value_node.start_mark.index, value_node.end_mark.index
        new = format_scalar(value, flow=flow)
        if start == end:  # `key:` with an empty value: the position is just after the colon
            new = " " + new
        return text[:start] + new + text[end:]
    if flow:
        # `model: {n_layer: 2}`: add `, key: value` before the closing brace.
        if sec_value.value:
            at = sec_value.value[-1][1].end_mark.index
            insert = f", {key}: {format_scalar(value, flow=True)}"
        else:
            at = sec_value.start_mark.index + 1
            insert = f"{key}: {format_scalar(value, flow=True)}"
        return text[:at] + insert + text[at:]
    indent = " " * sec_value.value[0][0].start_mark.column
    last_end = sec_value.value[-1][1].end_mark
    # After the line holding the end of the section's last value; a block value ends at
    # the start of the line after it (column 0).
    at = last_end.index if last_end.column == 0 else _line_end(text, last_end.index)
    return text[:at] + f"{indent}{key}: {format_scalar(value)}\n" + text[at:]


def _find(mapping: yaml.MappingNode, name: str) -> tuple[yaml.Node, yaml.Node] | None:
    """The (key, value) nodes of `name` in a mapping, however the key is quoted."""
    for key, value in mapping.value:
        if isinstance(key, yaml.ScalarNode) and key.value == name:
            return key, value
    return None


def _is_alias_target(root: yaml.Node, target: yaml.Node) -> bool:
    """Whether `target` is reachable from `root` more than once (it is aliased)."""
    count = 0
    seen: set[int] = set()
    stack: list[yaml.Node] = [root]
    while stack:
        node = stack.pop()
        if node is target:
            count += 1
            if count > 1:
                return True
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                stack.extend((k, v))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
    return False


def _line_end(text: str, index: int) -> int:
    """The index just after the newline that ends the line holding `index`."""
    nl = text.find("\n", index)
    return len(text) if nl < 0 else nl + 1


def format_scalar(value: Any, flow: bool = False) -> str:
    """A value as a YAML scalar that reads back as the same value (quoted in flow style
    when a plain scalar could be misread: commas and brackets end it there)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return repr(value)
    if flow and isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid double-quoted YAML scalar
    dumped = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    return dumped.removesuffix("\n...").strip()

