"""`llmkit inspect` on a trained checkpoint: the same text as `llmkit generate`, a NaN
report that parses strictly, calibrated thresholds with their sources, the validator and
its versions, the page, and no Lightning on the way."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from commands.test_inference import modules_after
from llmkit.commands.generate import generate_text
from llmkit.commands.inspect import (
    InspectError,
    InspectOptions,
    check,
    check_options,
    inspect_trained,
    options_from_flags,
    show,
)
from llmkit.inference import load_model
from llmkit.inspect import inspect_report
from llmkit.inspect.health import Thresholds
from llmkit.inspect.inspect_page import html_page
from llmkit.inspect.inspect_report import read_inspect_report, validate_inspect_report
from llmkit.inspect.report import ReportError, dumps, loads_strict
from llmkit.inspect.telemetry import Sampling

PROMPT = "the king <b>&"


@pytest.fixture(scope="module")
def lm(trained_project):
    return trained_project("inspect", n_layer=4)


@pytest.fixture(scope="module")
def trained(lm):
    return load_model(lm, log=lambda _: None)


def opts(**kw) -> InspectOptions:
    sampling = Sampling(**{k: kw.pop(k) for k in list(kw) if k in Sampling.__dataclass_fields__})
    return InspectOptions(prompt=kw.pop("prompt", PROMPT), sampling=sampling, device="cpu",
                          **kw)


@pytest.mark.parametrize("settings", [
    {"temperature": 0.8, "seed": 7},
    {"temperature": 1.3, "top_k": 5, "seed": 3, "attention": False},
    {"temperature": 0.0, "seed": None},
])
def test_the_same_seed_gives_the_same_text_as_generate(lm, trained, settings):
    settings = dict(settings)
    attention = settings.pop("attention", True)
    want = generate_text(lm, PROMPT, max_new_tokens=20, device="cpu", log=lambda _: None,
                         **settings)
    report = inspect_trained(trained, opts(max_new_tokens=20, attention=attention,
                                           **settings), log=lambda _: None)
    assert report["text"]["prompt"] + report["text"]["generated"] == want
    assert len(report["steps"]) == 20 or report["stopped"] == "eos"


def test_a_nan_in_block_1_is_named_and_the_report_parses_strictly(trained):
    hook = trained.model.transformer.h[1].register_forward_hook(
        lambda m, i, out: out * float("nan"))
    try:
        report = inspect_trained(trained, opts(max_new_tokens=5, seed=1), log=lambda _: None)
    finally:
        hook.remove()
    text = dumps(report)
    assert ": NaN" not in text and "Infinity" not in text  # no bare non-standard tokens
    back = loads_strict(text)
    validate_inspect_report(back)
    flag = next(f for f in back["health"]["flags"] if f["code"] == "nonfinite")
    assert flag["where"] == {"step": 0, "layer": 1, "name": "h1"}
    assert back["stopped"] == "nonfinite" and back["steps"][0]["entropy_bits"] is None
    assert {"where": "steps[0].entropy_bits", "value": "nan"} in back["nonfinite"]


def test_calibrate_records_each_threshold_and_its_source(trained):
    given = replace(Thresholds(), l2_ratio=7.0)
    report = inspect_trained(trained, opts(max_new_tokens=3, seed=1, calibrate=True,
                                           thresholds=given,
                                           thresholds_given=frozenset({"l2_ratio"})),
                             log=lambda _: None)
    th = report["settings"]["thresholds"]
    assert {k: v["source"] for k, v in th.items()} == {
        "entropy_share": "calibrated", "loop_distance": "calibrated", "l2_ratio": "flag",
        "collapse_entropy": "default", "loop_tokens": "default", "loop_period": "default"}
    assert th["l2_ratio"]["value"] == 7.0
    assert 0 < th["entropy_share"]["value"] <= 1 and th["loop_distance"]["value"] > 0
    assert th["entropy_share"]["value"] != Thresholds().entropy_share
    cal = report["settings"]["calibration"]
    assert cal["windows"] >= 1 and cal["positions"] >= cal["windows"]


@pytest.fixture(scope="module")
def report(trained):
    return inspect_trained(trained, opts(max_new_tokens=6, seed=2), log=lambda _: None)


def test_the_validator_rejects_a_missing_field_a_wrong_version_and_a_nan(report, tmp_path):
    validate_inspect_report(report)
    broken = {k: v for k, v in report.items() if k != "settings"}
    with pytest.raises(ReportError, match="missing key 'settings'"):
        validate_inspect_report(broken)
    steps = [{k: v for k, v in s.items() if k != "l2"} for s in report["steps"]]
    with pytest.raises(ReportError, match=r"\$.steps\[0\]: missing key 'l2'"):
        validate_inspect_report({**report, "steps": steps})
    with pytest.raises(ReportError, match="version 2 was written by a newer llmkit"):
        validate_inspect_report({**report, "version": 2})
    with pytest.raises(ReportError, match="version 0 is not a version"):
        validate_inspect_report({**report, "version": 0})
    with pytest.raises(ReportError, match="version must be an integer"):
        validate_inspect_report({**report, "version": "1"})
    path = tmp_path / "nan.json"
    path.write_text(json.dumps({**report, "steps": [{**report["steps"][0],
                                                     "entropy_bits": float("nan")}]}))
    with pytest.raises(ReportError, match=r"nan.json: not strict JSON .*NaN"):
        read_inspect_report(path)
    with pytest.raises(ReportError, match="nope.json: cannot read it"):
        read_inspect_report(tmp_path / "nope.json")


def test_an_older_version_stays_readable_after_a_new_one(report, tmp_path, monkeypatch):
    """With a (pretend) version 2 that adds a field, a version 1 file still opens."""
    path = tmp_path / "v1.json"
    path.write_text(dumps(report), encoding="utf-8")
    v2 = json.loads(json.dumps(inspect_report.SCHEMA_V1))
    v2["properties"]["version"]["enum"] = [2]
    v2["properties"]["notes"] = {"type": "array", "items": {"type": "string"}}
    v2["required"] = [*v2["required"], "notes"]
    monkeypatch.setattr(inspect_report, "VERSION", 2)
    monkeypatch.setitem(inspect_report.SCHEMAS, 2, v2)
    monkeypatch.setitem(inspect_report.UPGRADES, 1,
                        lambda r: {**r, "version": 2, "notes": ["upgraded from version 1"]})
    upgraded, version = read_inspect_report(path)
    assert version == 1 and upgraded["version"] == 2
    assert upgraded["notes"] == ["upgraded from version 1"]
    assert upgraded["steps"] == report["steps"]


def test_check_and_show_read_a_file(report, tmp_path):
    path = tmp_path / "r.json"
    path.write_text(dumps(report), encoding="utf-8")
    said: list[str] = []
    check(path, echo=said.append)
    assert said == [f"{path}: a valid llmkit.inspect report (version 1), 6 steps, "
                    f"{len(report['health']['flags'])} flag(s), 0 non-finite value(s)"]
    show(path, tmp_path / "p.html", echo=said.append)
    assert (tmp_path / "p.html").read_text(encoding="utf-8") == html_page(report)
    assert any(line.startswith("health: 6 steps") for line in said[1].splitlines())


def test_the_page_stands_alone_with_the_text_escaped(report):
    page = html_page(report)
    assert "the king &lt;b&gt;&amp;" in page and "<b>&" not in page
    assert "<script" not in page and "http" not in page.split("</style>")[1]
    for heading in ("Text", "Health", "Layers x steps", "Attention heads"):
        assert f"<h2>{heading}</h2>" in page
    assert page.count('class="tok') == 2 * (len(report["prompt"]["tokens"]) - 1
                                             + len(report["steps"]))


def test_option_problems_are_reported_together():
    with pytest.raises(InspectError) as e:
        check_options(opts(prompt="", max_new_tokens=0, temperature=-1.0, top_k=0))
    for part in ("--prompt is empty", "--max-new-tokens must be >= 1, got 0",
                 "--temperature must be >= 0", "--top-k must be >= 1, got 0"):
        assert part in str(e.value)
    flags = {"prompt": "a", "max_new_tokens": 5, "temperature": 0.8, "top_k": None,
             "seed": None, "no_attention": False, "calibrate": False, "report_top": 5,
             "device": "cpu", "checkpoint": None, "json_path": None, "html_path": None,
             "tensorboard": False, **{n: getattr(Thresholds(), n) for n in Thresholds.names()}}
    with pytest.raises(InspectError, match="entropy_share must be in"):
        options_from_flags({**flags, "entropy_share": 2.0}, frozenset({"entropy_share"}))
    o = options_from_flags({**flags, "l2_ratio": 9.0}, frozenset({"l2_ratio", "seed"}))
    assert o.thresholds.l2_ratio == 9.0 and o.thresholds_given == {"l2_ratio"}


def test_a_prompt_longer_than_the_block_is_refused(trained):
    with pytest.raises(InspectError, match="longer than model.block_size 32"):
        inspect_trained(trained, opts(prompt="word " * 40), log=lambda _: None)


def test_inspect_imports_neither_lightning_nor_the_trainer(lm):
    assert modules_after("inspect", "--prompt", "the", "--max-new-tokens", "2",
                         cwd=lm.root) == []


def test_telemetry_keeps_no_big_tensor(trained):
    """What a generation keeps per step is O(layers x heads), whatever the text length."""
    from llmkit.inspect.telemetry import inspect_generation

    gen = inspect_generation(trained.model, [2, 5, 6], Sampling(max_new_tokens=40),
                             generator=torch.Generator().manual_seed(0))
    c = trained.model.config
    # 2 x report_top tokens, 6 scalars, 3 per layer, 3 per head, loop_period distances:
    # nothing that grows with the text (T) or the width (n_embd)
    bound = 2 * 5 + 6 + 3 * c.n_layer + 3 * c.n_layer * c.n_head + 4
    sizes = [sum(t.numel() for t in s.values()) for s in gen.steps]
    assert len(sizes) == 40 and max(sizes) == bound and sizes[-1] == sizes[10]
