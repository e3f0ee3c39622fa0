"""Reports: strict JSON, atomic writes, and a schema check that names the bad place."""

from __future__ import annotations

import json

import pytest

from llmkit.inspect.report import (
    ReportError,
    dumps,
    header,
    loads_strict,
    validate,
    write_report,
)

SCHEMA = {
    "type": "object", "required": ["schema", "version", "values"],
    "additionalProperties": False,
    "properties": {
        "schema": {"type": "string", "enum": ["t"]},
        "version": {"type": "integer"},
        "llmkit_version": {"type": "string"},
        "created_utc": {"type": "string"},
        "values": {"type": "array", "items": {"type": ["number", "null"], "minimum": 0}},
    },
}


def test_header_names_schema_and_integer_version():
    h = header("t", 3)
    assert h["schema"] == "t" and h["version"] == 3
    assert h["created_utc"].endswith("Z") and h["llmkit_version"]


def test_strict_json_round_trip_and_nan_refused():
    report = {**header("t", 1), "values": [0.5, None, 2]}
    text = dumps(report)
    assert loads_strict(text) == report
    with pytest.raises(ReportError, match="non-finite"):
        dumps({**report, "values": [float("nan")]})
    with pytest.raises(ValueError, match="NaN"):
        loads_strict('{"x": NaN}')
    assert json.loads('{"x": NaN}')  # the lenient parser the strict one guards against


def test_validate_lists_every_problem_with_its_path():
    bad = {"schema": "u", "version": 1.5, "values": [1, "x", -1, True], "extra": 1}
    with pytest.raises(ReportError) as e:
        validate(bad, SCHEMA)
    msg = str(e.value)
    assert "$.schema: 'u' is not one of ['t']" in msg
    assert "$.version: expected integer" in msg
    assert "$.values[1]: expected number or null" in msg
    assert "$.values[2]: -1 is below the minimum 0" in msg
    assert "$.values[3]: expected number or null, got bool" in msg
    assert "unexpected key 'extra'" in msg
    with pytest.raises(ReportError, match="missing key 'values'"):
        validate({"schema": "t", "version": 1}, SCHEMA)
    validate({"schema": "t", "version": 1, "values": [0, None, 1.5]}, SCHEMA)


def test_write_report_is_atomic_and_checked_first(tmp_path):
    path = tmp_path / "r.json"
    good = {**header("t", 1), "values": [1.0]}
    write_report(path, good, SCHEMA)
    assert loads_strict(path.read_text()) == good
    before = path.read_bytes()
    with pytest.raises(ReportError):
        write_report(path, {**good, "values": ["no"]}, SCHEMA)
    with pytest.raises(ReportError):
        write_report(path, {**good, "values": [float("inf")]}, SCHEMA)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temporary file left
