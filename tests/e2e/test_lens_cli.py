"""End to end, `llmkit lens`: the installed CLI in subprocesses, as a user runs it.

An LM project is scaffolded and trained a few steps (the lens scalars are read back from
its TensorBoard events), then looked through with both lenses, a variant and a control;
the JSON report must validate against its schema and parse strictly, and the HTML page
must stand alone. A span project gets the per-layer span view.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from llmkit.inspect.lens_report import validate_lens_report
from llmkit.inspect.report import loads_strict
from tests.e2e.helpers import one_line_error, overrides, trained_project

pytestmark = pytest.mark.slow

SHAPE = ["model.size=custom", "model.n_layer=2", "model.n_head=2", "model.n_embd=32",
         "model.block_size=32", "model.dropout=0.0", "tokenizer.vocab_size=300"]
LM_TRAIN = [*SHAPE, "training.batch_size=8", "training.warmup_steps=2",
            "training.val_every_steps=5", "training.val_batches=2", "logging.lens_windows=4",
            "training.checkpoint_every_steps=5"]


@pytest.fixture(scope="module")
def lm_project(tmp_path_factory, llmkit) -> Path:
    return trained_project(tmp_path_factory.mktemp("lens-e2e"), llmkit, LM_TRAIN)


def test_training_logs_the_lens_for_every_layer(lm_project, read_events):
    events = read_events(lm_project / "runs" / "proj" / "version_0")
    for metric in ("kl_bits", "ce_bits", "top1_agree"):
        assert {f"lens/{metric}/layer_{i}" for i in range(3)} <= events.scalar_tags
    assert [s for s, _ in events.scalars("lens/kl_bits/layer_0")] == [5, 10]
    assert [v for _, v in events.scalars("lens/kl_bits/layer_2")] == [0.0, 0.0]
    assert "epoch" not in events.scalar_tags


def test_lens_report_html_and_tuned_translators(lm_project, llmkit):
    proc = llmkit("lens", "--prompt", "ROMEO: <b>&", "--target", "a", "--variant",
                  "alt=JULIET: <b>&", "--control-prompt", "KING:", "--control-target", "b",
                  "--lens", "both", "--train-tuned", "--tuned-steps", "20", "--positions",
                  "all", "--top-k", "3", "--json", "r.json", "--html", "r.html",
                  *overrides(SHAPE), cwd=lm_project, timeout=240)
    out = proc.stdout
    assert "prompt (logit lens)" in out and "control (tuned lens)" in out
    assert "validation KL to the model's prediction" in out

    report = loads_strict((lm_project / "r.json").read_text(encoding="utf-8"))
    validate_lens_report(report)
    assert report["schema"] == "llmkit.lens" and report["version"] == 1
    assert report["checkpoint"]["step"] == 10 and report["checkpoint"]["task"] == "lm"
    assert report["settings"]["top_k"] == {"value": 3, "source": "flag"}
    assert report["settings"]["copy_prob"] == {"value": 0.5, "source": "default"}
    names = [(r["lens"], r["name"]) for r in report["runs"]]
    assert names == [(lens, n) for lens in ("logit", "tuned")
                     for n in ("prompt", "alt", "control")]
    for run in report["runs"]:
        assert [layer["layer"] for layer in run["layers"]] == [0, 1, 2]
        n_tokens = len(run["tokens"])
        assert all(len(layer["positions"]) == n_tokens for layer in run["layers"])
        assert run["layers"][-1]["positions"][-1]["kl_bits"] == 0.0
    control = [r for r in report["runs"] if r["name"] == "control"]
    assert all(len(r["summary"]["control_margin_bits"]) == 3 for r in control)
    kl = report["tuned_lens"]["val_kl_bits"]
    assert kl["logit"][-1] == 0.0 and kl["tuned"][-1] == 0.0 and len(kl["tuned"]) == 3
    assert report["nonfinite"] == []

    page = (lm_project / "r.html").read_text(encoding="utf-8")
    assert "ROMEO: &lt;b&gt;&amp;" in page and "<b>&" not in page
    assert not re.search(r"(src|href)\s*=|https?://", page)

    # the translators were saved beside the checkpoint; tuned alone now loads them
    ckpt = Path(report["checkpoint"]["path"])
    saved = ckpt.with_name(ckpt.stem + ".tuned-lens.pt")
    assert saved.is_file() and report["tuned_lens"]["path"] == str(saved)
    again = llmkit("lens", "--prompt", "ROMEO:", "--lens", "tuned", "--json", "t.json",
                   *overrides(SHAPE), cwd=lm_project)
    assert "tuned lens" in again.stdout
    assert loads_strict((lm_project / "t.json").read_text())["tuned_lens"]["val_kl_bits"] \
        == kl

    # translators of other weights are refused with one clear line
    payload = torch.load(saved, weights_only=True)
    payload["fingerprint"] = "0" * 64
    torch.save(payload, saved)
    bad = llmkit("lens", "--prompt", "ROMEO:", "--lens", "tuned", *overrides(SHAPE),
                 cwd=lm_project, ok=False)
    assert "trained for other weights" in one_line_error(bad)


def test_span_checkpoint_gets_the_per_layer_span_view(tmp_path, llmkit):
    llmkit("new", "sp", "--task", "span", cwd=tmp_path)
    root = tmp_path / "sp"
    span_shape = ["model.size=custom", "model.n_layer=2", "model.n_head=2", "model.n_embd=32",
                  "model.dropout=0.0"]
    llmkit("train", "--max-steps", "6", *overrides([*span_shape, "training.val_every_steps=3",
                                              "training.val_batches=2",
                                              "training.batch_size=8"]),
           cwd=root, timeout=240)
    text = "\\y.(\\x.x x) y y"
    proc = llmkit("lens", "--prompt", text, "--target", "(\\x.x x) y", "--json", "s.json",
                  "--html", "s.html", *overrides(span_shape), cwd=root)
    assert "span lens" in proc.stdout and "iou_final" in proc.stdout
    report = loads_strict((root / "s.json").read_text(encoding="utf-8"))
    validate_lens_report(report)
    (run,) = report["runs"]
    assert run["lens"] == "span" and run["gold"] == [3, 13]
    assert [layer["layer"] for layer in run["layers"]] == [0, 1, 2]
    assert run["layers"][-1]["iou_final"] == 1.0
    for layer in run["layers"]:
        s, e = layer["span"]
        assert layer["span_text"] == text[s:e]
        assert 0.0 <= layer["iou_gold"] <= 1.0
    assert "span lens" in (root / "s.html").read_text(encoding="utf-8")
    json.dumps(report, allow_nan=False)
