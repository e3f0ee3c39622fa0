"""End to end, `llmkit inspect`: the installed CLI in subprocesses, as a user runs it.

A tiny LM project is scaffolded and trained a few steps; `llmkit inspect --json --html
--tensorboard` must write a report that validates and parses strictly, a page with the
escaped text, and TensorBoard events (read back with TensorBoard's reader) holding the
inspect series; `llmkit generate` with the same seed prints the same text; `--check` and
`--show` work on the file, and a broken file is one clear error line.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmkit.inspect.inspect_report import read_inspect_report
from tests.e2e.helpers import overrides, trained_project

pytestmark = pytest.mark.slow

SHAPE = ["model.size=custom", "model.n_layer=3", "model.n_head=2", "model.n_embd=32",
         "model.block_size=32", "model.dropout=0.0", "tokenizer.vocab_size=300"]
TRAIN = [*SHAPE, "training.batch_size=8", "training.warmup_steps=2",
         "training.val_every_steps=5", "training.val_batches=2",
         "training.checkpoint_every_steps=5"]
PROMPT = "ROMEO: <b>&"


@pytest.fixture(scope="module")
def project(tmp_path_factory, llmkit) -> Path:
    return trained_project(tmp_path_factory.mktemp("inspect-e2e"), llmkit, TRAIN)


def test_inspect_json_html_tensorboard(project, llmkit, read_events):
    proc = llmkit("inspect", "--prompt", PROMPT, "--max-new-tokens", "8", "--seed", "3",
                  "--json", "r.json", "--html", "r.html", "--tensorboard", *overrides(SHAPE),
                  cwd=project, timeout=240)
    out = proc.stdout
    assert "step  token" in out and "health: 8 steps" in out
    assert "wrote r.json" in out and "wrote r.html" in out

    report, version = read_inspect_report(project / "r.json")  # strict parse + schema
    assert version == 1 and report["schema"] == "llmkit.inspect"
    assert report["checkpoint"]["step"] == 10 and report["checkpoint"]["model"]["n_layer"] == 3
    assert len(report["steps"]) == 8 and report["settings"]["seed"] == 3
    assert all(len(s["l2"]) == 3 and len(s["heads"]["entropy"]) == 3 for s in report["steps"])
    th = report["settings"]["thresholds"]
    assert th["entropy_share"] == {"value": 0.75, "source": "default",
                                   "bits": pytest.approx(0.75 * 8.228818690495881)}

    page = (project / "r.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "<script" not in page
    assert "ROMEO: &lt;b&gt;&amp;" in page and PROMPT not in page

    events = read_events(project / "runs" / "proj" / "version_0")
    for tag in ("inspect/entropy_bits", "inspect/surprisal_bits", "inspect/l2/h0",
                "inspect/l2/h2", "inspect/collapsed_heads", "inspect/nonfinite"):
        assert [s for s, _ in events.scalars(tag)] == list(range(8)), tag
    assert [round(v, 4) for _, v in events.scalars("inspect/entropy_bits")] == [
        round(s["entropy_bits"], 4) for s in report["steps"]]
    assert "train/loss" in events.scalar_tags  # the training curves share the folder
    (step, text), = events.texts("inspect/report")
    assert "health: 8 steps" in text and PROMPT in text

    same = llmkit("generate", "--prompt", PROMPT, "--max-new-tokens", "8", "--seed", "3",
                  *overrides(SHAPE), cwd=project)
    text = report["text"]["prompt"] + report["text"]["generated"]
    # the subprocess's text mode reads "\r" and "\r\n" as "\n" (universal newlines)
    assert same.stdout.rstrip("\n") == text.replace("\r\n", "\n").replace("\r", "\n")


def test_check_and_show_a_report_and_refuse_a_broken_one(project, llmkit):
    if not (project / "r.json").exists():
        llmkit("inspect", "--prompt", "KING:", "--max-new-tokens", "3", "--json", "r.json",
               *overrides(SHAPE), cwd=project, timeout=240)
    ok = llmkit("inspect", "--check", "r.json", cwd=project)
    assert "a valid llmkit.inspect report (version 1)" in ok.stdout
    shown = llmkit("inspect", "--show", "r.json", "--html", "again.html", cwd=project)
    assert "health:" in shown.stdout and (project / "again.html").is_file()

    report = json.loads((project / "r.json").read_text(encoding="utf-8"))
    report["version"] = 7
    (project / "bad.json").write_text(json.dumps(report), encoding="utf-8")
    bad = llmkit("inspect", "--check", "bad.json", cwd=project, ok=False)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines() == [
        "Error: bad.json: version 7 was written by a newer llmkit; this one reads versions "
        "1 to 1: upgrade llmkit"]
