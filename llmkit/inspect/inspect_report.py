"""The `llmkit.inspect` report: its schema per version, reading old versions, the console.

Reading a report (`read_inspect_report`) checks it against the schema of *its own*
version, then upgrades it one version at a time to the current one. Every version's
schema stays here, frozen, with a function that turns a report of that version into the
next one; so a file written by an older llmkit keeps opening (`--check`, `--show`) after
the format moves on. A file from a newer llmkit is refused with both versions named.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from llmkit.inspect.health import Thresholds, layer_label
from llmkit.inspect.html import show_token
from llmkit.inspect.report import ReportError, loads_strict, validate

SCHEMA = "llmkit.inspect"
VERSION = 1

_NUM = {"type": ["number", "null"]}
_NUMS = {"type": "array", "items": _NUM}
_INTS = {"type": "array", "items": {"type": "integer", "minimum": 0}}
_GRID = {"type": ["array", "null"], "items": _NUMS}  # per layer, per head
_TOKEN = {"type": "object", "required": ["id", "token"], "additionalProperties": False,
          "properties": {"id": {"type": "integer", "minimum": 0}, "token": {"type": "string"},
                         "prob": _NUM}}
_NONFINITE = {"type": "array", "items": {
    "type": "object", "required": ["where", "value"], "additionalProperties": False,
    "properties": {"where": {"type": "string"},
                   "value": {"type": "string", "enum": ["nan", "inf", "-inf"]}}}}
_STEP = {"type": "object", "additionalProperties": False, "required": [
    "step", "token", "entropy_bits", "entropy_share", "surprisal_bits", "top", "emb_l2",
    "l2", "block_cos", "emb_nonfinite", "nonfinite", "logits_nonfinite", "lag_distance",
    "heads", "collapsed_heads"], "properties": {
    "step": {"type": "integer", "minimum": 0},
    "token": {"type": ["object", "null"], "required": ["id", "token"],
              "properties": _TOKEN["properties"]},
    "entropy_bits": _NUM, "entropy_share": _NUM, "surprisal_bits": _NUM,
    "top": {"type": "array", "items": _TOKEN},
    "emb_l2": _NUM, "l2": _NUMS, "block_cos": _NUMS,
    "emb_nonfinite": {"type": "integer", "minimum": 0}, "nonfinite": _INTS,
    "logits_nonfinite": {"type": "integer", "minimum": 0},
    "lag_distance": _NUMS,
    "heads": {"type": ["object", "null"], "required": ["entropy", "max_weight", "sink"],
              "additionalProperties": False,
              "properties": {"entropy": _GRID, "max_weight": _GRID, "sink": _GRID}},
    "collapsed_heads": {"type": ["array", "null"],
                        "items": {"type": "integer", "minimum": 0}}}}
_FINDING = {"type": "object", "additionalProperties": False, "required": [
    "code", "severity", "message", "where", "numbers", "suggestion", "steps"], "properties": {
    "code": {"type": "string", "enum": [
        "nonfinite", "mid_layer_l2", "repetition_loop", "attention_collapse_trend",
        "high_entropy", "attention_collapse"]},
    "severity": {"type": "string", "enum": ["error", "warning", "info"]},
    "message": {"type": "string"}, "where": {"type": "object"}, "numbers": {"type": "object"},
    "suggestion": {"type": "string"}, "steps": _INTS}}
_THRESHOLD = {"type": "object", "required": ["value", "source"], "additionalProperties": False,
              "properties": {"value": {"type": "number"},
                             "source": {"type": "string",
                                        "enum": ["default", "flag", "calibrated"]},
                             "bits": {"type": "number"}}}
_THRESHOLD_NAMES = ["entropy_share", "l2_ratio", "loop_distance", "collapse_entropy",
                    "loop_tokens", "loop_period"]

SCHEMA_V1: dict[str, Any] = {
    "type": "object", "additionalProperties": False,
    "required": ["schema", "version", "llmkit_version", "created_utc", "checkpoint",
                 "settings", "prompt", "text", "stopped", "steps", "health", "nonfinite"],
    "properties": {
        "schema": {"type": "string", "enum": [SCHEMA]},
        "version": {"type": "integer", "enum": [1]},
        "llmkit_version": {"type": "string"},
        "created_utc": {"type": "string"},
        "checkpoint": {"type": "object", "additionalProperties": False,
                       "required": ["path", "step", "tokenizer_hash", "model"], "properties": {
                           "path": {"type": "string"},
                           "step": {"type": ["integer", "null"], "minimum": 0},
                           "tokenizer_hash": {"type": "string"},
                           "model": {"type": "object", "required": [
                               "n_layer", "n_head", "n_embd", "block_size", "vocab_size"],
                               "additionalProperties": {"type": [
                                   "integer", "number", "boolean", "string", "null"]}}}},
        "settings": {"type": "object", "additionalProperties": False, "required": [
            "prompt", "max_new_tokens", "temperature", "top_k", "seed", "attention",
            "device", "report_top", "thresholds", "calibration"], "properties": {
            "prompt": {"type": "string"},
            "max_new_tokens": {"type": "integer", "minimum": 1},
            "temperature": {"type": "number", "minimum": 0},
            "top_k": {"type": ["integer", "null"], "minimum": 1},
            "seed": {"type": ["integer", "null"]},
            "attention": {"type": "boolean"},
            "device": {"type": "string"},
            "report_top": {"type": "integer", "minimum": 1},
            "thresholds": {"type": "object", "additionalProperties": False,
                           "required": _THRESHOLD_NAMES,
                           "properties": {n: _THRESHOLD for n in _THRESHOLD_NAMES}},
            "calibration": {"type": ["object", "null"], "required": ["windows", "positions"],
                            "properties": {"windows": {"type": "integer", "minimum": 1},
                                           "positions": {"type": "integer", "minimum": 1}}}}},
        "prompt": {"type": "object", "additionalProperties": False,
                   "required": ["tokens", "surprisal_bits", "block_cos", "l2"], "properties": {
                       "tokens": {"type": "array", "items": _TOKEN},
                       "surprisal_bits": _NUMS, "block_cos": _NUMS, "l2": _NUMS}},
        "text": {"type": "object", "required": ["prompt", "generated"],
                 "additionalProperties": False,
                 "properties": {"prompt": {"type": "string"}, "generated": {"type": "string"}}},
        "stopped": {"type": "string", "enum": ["max_new_tokens", "eos", "nonfinite"]},
        "steps": {"type": "array", "items": _STEP},
        "health": {"type": "object", "required": ["flags"], "additionalProperties": False,
                   "properties": {"flags": {"type": "array", "items": _FINDING}}},
        "nonfinite": _NONFINITE,
    },
}

# version -> its schema; version -> the function that turns it into version + 1.
SCHEMAS: dict[int, dict[str, Any]] = {1: SCHEMA_V1}
UPGRADES: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


def validate_inspect_report(report: Any) -> int:
    """Check a report against the schema of its own version; return that version.

    Raises ReportError for another schema, a version this llmkit does not know (a newer
    one says so), or any field that does not match (all problems listed).
    """
    if not isinstance(report, dict):
        raise ReportError(f"an inspect report is a JSON object, got {type(report).__name__}")
    if report.get("schema") != SCHEMA:
        raise ReportError(f"schema is {report.get('schema')!r}, expected {SCHEMA!r}")
    version = report.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ReportError(f"version must be an integer, got {version!r}")
    if version > VERSION:
        raise ReportError(f"version {version} was written by a newer llmkit; this one reads "
                          f"versions 1 to {VERSION}: upgrade llmkit")
    if version not in SCHEMAS:
        raise ReportError(f"version {version} is not a version of {SCHEMA} (known: "
                          f"{sorted(SCHEMAS)})")
    validate(report, SCHEMAS[version])
    return version


def upgrade(report: dict[str, Any], version: int) -> dict[str, Any]:
    """A report of any known version, as the current version.

    `version` is what `validate_inspect_report` returned for it: the report is validated
    there, not again here; each upgraded version is validated as it is made.
    """
    while version < VERSION:
        report = UPGRADES[version](report)
        version += 1
        validate(report, SCHEMAS[version])
    return report


def read_inspect_report(path: Path) -> tuple[dict[str, Any], int]:
    """Read, strictly parse, validate and upgrade a report file; errors name the file.

    Returns the report as the current version, and the version the file was written in.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise ReportError(f"{path}: cannot read it ({e.strerror})") from None
    try:
        report = loads_strict(text)
    except ValueError as e:  # malformed JSON, or NaN / Infinity tokens
        raise ReportError(f"{path}: not strict JSON ({e})") from None
    try:
        version = validate_inspect_report(report)
        return upgrade(report, version), version
    except ReportError as e:
        raise ReportError(f"{path}: {e}") from None


# --------------------------------------------------------------------------------------
# Console
# --------------------------------------------------------------------------------------


def _f(value: float | None, width: int, digits: int = 2) -> str:
    return f"{'n/a':>{width}}" if value is None else f"{value:{width}.{digits}f}"


def step_marks(report: dict[str, Any]) -> dict[int, list[str]]:
    """Per step, the codes of the flags that concern it (for the compact lines)."""
    short = {"nonfinite": "NaN", "mid_layer_l2": "L2", "repetition_loop": "loop",
             "attention_collapse_trend": "collapse+", "high_entropy": "H",
             "attention_collapse": "sink"}
    marks: dict[int, list[str]] = {}
    for flag in report["health"]["flags"]:
        if flag["code"] == "attention_collapse":
            continue  # structural: not an event of any one step
        for s in flag["steps"]:
            marks.setdefault(s, []).append(short[flag["code"]])
    return marks


def thresholds_of(report: dict[str, Any]) -> Thresholds:
    """The thresholds a report was made with."""
    return Thresholds(**{k: v["value"] for k, v in report["settings"]["thresholds"].items()})


def console(report: dict[str, Any]) -> str:
    """The generated text, a compact line per step, and the health summary."""
    text = report["text"]
    lines = [text["prompt"] + text["generated"], "",
             f"{'step':>4}  {'token':<10} {'H bits':>7} {'share':>6} {'surpr':>6} "
             f"{'collapsed':>9}  flags"]
    marks = step_marks(report)
    for s in report["steps"]:
        tok = show_token(s["token"]["token"]) if s["token"] is not None else "—"
        counts = s["collapsed_heads"]
        col = "-" if counts is None else str(sum(counts))
        lines.append(f"{s['step']:>4}  {tok[:10]:<10} {_f(s['entropy_bits'], 7)} "
                     f"{_f(s['entropy_share'], 6)} {_f(s['surprisal_bits'], 6)} {col:>9}  "
                     f"{' '.join(marks.get(s['step'], []))}")
    lines.append("")
    lines.append(health_summary(report))
    return "\n".join(lines)


def health_summary(report: dict[str, Any]) -> str:
    """One line per flag, faults first; or a line saying none was raised."""
    flags = report["health"]["flags"]
    stopped = {"eos": "stopped at EOS", "nonfinite": "stopped: non-finite logits",
               "max_new_tokens": "reached --max-new-tokens"}[report["stopped"]]
    head = f"health: {len(report['steps'])} steps ({stopped}); "
    if not flags:
        return head + "no flags raised"
    lines = [head + f"{len(flags)} flag(s)"]
    for f in flags:
        where = f["where"]
        at = f"step {where.get('step')}, layer {where.get('name', layer_label(None))}"
        lines.append(f"  {f['severity']:<7} {f['code']} ({at}): {f['message']}")
    if report["nonfinite"]:
        lines.append(f"  {len(report['nonfinite'])} non-finite values are null in the report, "
                     f"first at {report['nonfinite'][0]['where']}")
    return "\n".join(lines)
