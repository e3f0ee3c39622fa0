"""The lens report: schema, console table and page, from real runs (one with NaNs)."""

from __future__ import annotations

import copy

import pytest
import torch

from llmkit.inspect.lens import LensSettings, lens_run
from llmkit.inspect.lens_report import (
    SCHEMA,
    VERSION,
    collect_nonfinite,
    console_lm,
    html_page,
    run_summary,
    validate_lens_report,
)
from llmkit.inspect.numerics import NonFinite
from llmkit.inspect.report import ReportError, dumps, header, loads_strict
from tests.inspection.helpers import inp, tiny_lm, token_text


def report_of(runs: list[dict]) -> dict:
    return {**header(SCHEMA, VERSION),
            "checkpoint": {"path": "x.ckpt", "step": 3, "task": "lm", "tokenizer_hash": "h",
                           "fingerprint": "f", "model": {"n_layer": 3, "causal": True}},
            "settings": {"top_k": {"value": 5, "source": "default"}},
            "runs": runs, "summary": [run_summary(r) for r in runs], "tuned_lens": None,
            "notes": ["a <note>"], "nonfinite": collect_nonfinite(runs, NonFinite())}


@pytest.fixture(scope="module")
def runs() -> list[dict]:
    good = lens_run(tiny_lm(20), inp([3, 4, 5], target=6), LensSettings(positions="all"),
                    "logit", token_text)
    broken_model = tiny_lm(21)
    with torch.no_grad():
        broken_model.transformer.h[2].attn.c_proj.weight.fill_(float("nan"))
    broken = lens_run(broken_model, inp([3, 4, 5], target=6, name="broken"),
                      LensSettings(positions="all"), "logit", token_text)
    return [good, broken]


def test_report_validates_round_trips_and_names_each_null(runs):
    report = report_of(runs)
    validate_lens_report(report)
    back = loads_strict(dumps(report))
    assert back == report
    assert report["nonfinite"], "the broken run must report its NaNs"
    assert all(e["where"].startswith("runs[1].layers[3].") for e in report["nonfinite"]
               if "kl_bits" not in e["where"])
    for entry in report["nonfinite"]:  # every named place really holds a null
        node = back
        path = entry["where"].replace("]", "").replace("[", ".").split(".")
        for part in path:
            node = node[int(part)] if part.isdigit() else node[part]
        assert node is None, entry


def test_schema_rejects_wrong_types_in_layer_records(runs):
    report = report_of(copy.deepcopy(runs))
    report["runs"][0]["layers"][1]["positions"][0]["entropy_bits"] = "1.5"
    with pytest.raises(ReportError, match=r"\$\[1\]\.positions\[0\]\.entropy_bits"):
        validate_lens_report(report)
    report = report_of(copy.deepcopy(runs))
    report["nonfinite"].append({"where": "x", "value": "NaN"})
    with pytest.raises(ReportError, match="not one of"):
        validate_lens_report(report)


def test_console_and_page_show_missing_values_as_missing(runs):
    table = console_lm(runs[1])
    assert "n/a" in table and "0.00 " not in table.splitlines()[-2]
    page = html_page(report_of(runs), "entropy")
    assert 'class="na"' in page or 'class="mark na"' in page
    assert "Non-finite values" in page and "a &lt;note&gt;" in page
    for quantity in ("kl", "top_prob", "target_prob"):
        assert "<table" in html_page(report_of(runs), quantity)
