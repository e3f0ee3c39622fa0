"""End to end, span task: the installed `llmkit` CLI in subprocesses, as a user runs it.

`llmkit new proj --task span`, then `llmkit train` a small model for a few dozen steps on
the sample data, once for the module. Then: the TensorBoard event file holds the span
metrics and a `samples/spans` text whose markers sit at the logged character offsets;
`llmkit predict` answers for one text and for a JSONL file; `llmkit eval --json` gives the
metrics the run logged for its best checkpoint.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from llmkit.config import write_back

pytestmark = pytest.mark.slow

LLMKIT = Path(sys.executable).with_name("llmkit")  # the console script of this environment

# Small enough to train in ~15 s on 2 CPU cores, large enough to predict spans by the
# end. The shape goes into llmkit.yaml (predict and eval read the shape from there); the
# schedule is given with -o for this run only.
SHAPE = {"model.n_layer": 2, "model.n_head": 2, "model.n_embd": 32, "model.dropout": 0.0}
STEPS, VAL_EVERY = 120, 60
TRAIN_OVERRIDES = [
    f"training.max_steps={STEPS}", f"training.val_every_steps={VAL_EVERY}",
    "training.warmup_steps=10", "training.lr=3e-3", "training.checkpoint_every_steps=60",
    "logging.num_samples=8", "logging.log_every_steps=10",
]
SPAN_METRICS = ("val/span_iou", "val/exact_match", "val/nospan_precision", "val/nospan_recall")

# `{{`/`}}` and `[[`/`]]` are the markers; the sample legend mentions them too, so samples
# are read from their code blocks only (lines indented by four spaces).
SUMMARY = re.compile(r"^gold: (no span|\[(\d+), (\d+)\)); pred: (no span|\[(\d+), (\d+)\)); "
                     r"iou: ([\d.]+); score: (-?[\d.]+|-?inf)$")


def llmkit(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the installed CLI; fail the test with its output when it exits non-zero."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run([str(LLMKIT), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
    if proc.returncode != 0:
        pytest.fail(f"llmkit {' '.join(args)} exited {proc.returncode}\n--- stdout\n"
                    f"{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-3000:]}")
    return proc


def read_events(run_dir: Path) -> EventAccumulator:
    (event_file,) = run_dir.glob("events.out.tfevents.*")
    acc = EventAccumulator(str(event_file), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def strip_markers(marked: str) -> str:
    return marked.replace("[[", "").replace("]]", "").replace("{{", "").replace("}}", "")


def parse_samples(text: str) -> list[dict]:
    """Each sample of a `samples/spans` text: its marked text and its summary line."""
    samples, block = [], []
    for line in text.splitlines():
        if line.startswith("    "):
            block.append(line[4:])
        elif m := SUMMARY.match(line):
            gold = None if m[1] == "no span" else (int(m[2]), int(m[3]))
            pred = None if m[4] == "no span" else (int(m[5]), int(m[6]))
            samples.append({"marked": "\n".join(block), "gold": gold, "pred": pred,
                            "iou": float(m[7])})
            block = []
    return samples


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    """A span project made by `llmkit new` and trained once by `llmkit train`."""
    parent = tmp_path_factory.mktemp("span-e2e")
    llmkit("new", "proj", "--task", "span", cwd=parent)
    root = parent / "proj"
    write_back(root / "llmkit.yaml", SHAPE)
    args = ["train"]
    for override in TRAIN_OVERRIDES:
        args += ["-o", override]
    proc = llmkit(*args, cwd=root)
    run_dir = root / "runs" / "proj" / "version_0"
    assert run_dir.is_dir(), proc.stdout
    return {"root": root, "run_dir": run_dir, "stdout": proc.stdout,
            "val": read_jsonl(root / "data" / "val.jsonl")}


def test_train_logs_span_metrics_and_losses(trained):
    acc = read_events(trained["run_dir"])
    scalars = set(acc.Tags()["scalars"])
    # nospan_precision is undefined (not logged) at a validation that predicts no no-span;
    # the sample data has gold no-spans, so recall always is.
    required = {"train/loss", "val/loss", "val/span_iou", "val/exact_match",
                "val/nospan_recall"}
    assert required <= scalars, sorted(scalars)
    validations = len(acc.Scalars("val/loss"))
    assert validations == STEPS // VAL_EVERY
    for tag in SPAN_METRICS:
        for event in acc.Scalars(tag) if tag in scalars else []:
            assert 0.0 <= event.value <= 1.0, (tag, event)
    losses = [e.value for e in acc.Scalars("train/loss")]
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0]  # it learned something
    assert acc.Scalars("val/span_iou")[-1].value > 0.3  # better than "no span" everywhere
    assert f"training finished at step {STEPS}" in trained["stdout"]


def test_span_samples_mark_gold_and_predicted_character_spans(trained):
    acc = read_events(trained["run_dir"])
    (tag,) = [t for t in acc.Tags()["tensors"] if t.startswith("samples/spans")]
    events = acc.Tensors(tag)
    assert len(events) == STEPS // VAL_EVERY  # after each validation, not the sanity check
    text = events[-1].tensor_proto.string_val[0].decode()

    samples = parse_samples(text)
    assert len(samples) == 8, text
    gold_of = {row["text"]: row["span"] for row in trained["val"]}
    for s in samples:
        plain = strip_markers(s["marked"])
        assert plain in gold_of, plain  # a validation text, unchanged but for the markers
        want = gold_of[plain]
        assert s["gold"] == (tuple(want) if want else None)
        # Each pair of markers encloses exactly its span's characters.
        for span, (open_, close) in ((s["gold"], ("[[", "]]")), (s["pred"], ("{{", "}}"))):
            if span is None:
                assert open_ not in s["marked"] and close not in s["marked"]
                continue
            other = ("{{", "}}") if open_ == "[[" else ("[[", "]]")
            only = s["marked"].replace(other[0], "").replace(other[1], "")
            inside = only[only.index(open_) + 2:only.index(close)]
            assert inside == plain[span[0]:span[1]], (s, span)
    # Both kinds of marker appear in the samples themselves (not only in the legend).
    body = "\n".join(s["marked"] for s in samples)
    assert "[[" in body and "]]" in body
    assert "{{" in body and "}}" in body
    assert any(s["pred"] and s["gold"] for s in samples)


def test_predict_one_text_prints_span_offsets_and_score(trained):
    text = r"(\x.x) y"
    out = llmkit("predict", "--text", text, cwd=trained["root"]).stdout
    m = re.search(r"span: \[(\d+), (\d+)\) '(.*)'  score: (-?\d+\.\d{3})", out)
    assert m, out
    start, end = int(m[1]), int(m[2])
    assert 0 <= start < end <= len(text)
    assert m[3] == text[start:end].replace("\\", "\\\\")  # printed with repr()
    assert float(m[4]) > 0  # a span is printed only when it beats "no span"
    assert out.startswith(text + "\n")


def test_predict_jsonl_writes_one_line_per_input(trained):
    root = trained["root"]
    texts = [row["text"] for row in trained["val"][:12]] + [r"(\x.x) y", "a"]
    inp = root / "in.jsonl"
    inp.write_text("".join(json.dumps({"text": t, "id": i}) + "\n"
                           for i, t in enumerate(texts)), encoding="utf-8")
    out = root / "out.jsonl"
    proc = llmkit("predict", "--input", "in.jsonl", "--output", "out.jsonl", cwd=root)
    assert f"wrote {len(texts)} predictions" in proc.stdout

    rows = read_jsonl(out)
    assert [r["text"] for r in rows] == texts  # one line per input, in order
    for r in rows:
        assert {"span", "span_text", "score"} <= set(r)
        if r["span"] is None:
            assert r["span_text"] is None
        else:
            s, e = r["span"]
            assert 0 <= s < e <= len(r["text"])
            assert r["span_text"] == r["text"][s:e]
            assert r["score"] > 0
    assert any(r["span"] for r in rows)
    # The file agrees with the one-text form.
    one = llmkit("predict", "--text", r"(\x.x) y", cwd=root).stdout
    (row,) = [r for r in rows if r["text"] == r"(\x.x) y"]
    assert f"score: {row['score']:.3f}" in one


def test_eval_json_reports_the_best_checkpoints_logged_metrics(trained):
    out = llmkit("eval", "--json", cwd=trained["root"]).stdout
    metrics = json.loads(out)
    for key in ("val/loss", "val/span_iou", "val/exact_match", "val/nospan_recall"):
        assert isinstance(metrics[key], float), (key, metrics)
    assert Path(metrics["checkpoint"]).name.startswith("best-step")

    # The best checkpoint is the validation with the lowest val/loss; eval runs the same
    # validation on it, so it reproduces what training logged there.
    acc = read_events(trained["run_dir"])
    best = min(acc.Scalars("val/loss"), key=lambda e: e.value)
    logged = {tag: {e.step: e.value for e in acc.Scalars(tag)}
              for tag in SPAN_METRICS if tag in acc.Tags()["scalars"]}
    assert metrics["val/loss"] == pytest.approx(best.value, rel=1e-4)
    for tag, by_step in logged.items():
        if best.step in by_step:
            assert metrics[tag] == pytest.approx(by_step[best.step], abs=1e-6), tag
