"""End to end, language model: the installed `llmkit` CLI in subprocesses, as a user runs it.

Once for the module: `llmkit new proj` (the Tiny Shakespeare sample), `llmkit train` a tiny
model for N steps (the BPE tokenizer is trained first), then `llmkit train --resume` to 2N.
The tests read what that left behind: the TensorBoard events, llmkit.yaml, the run folder,
and what `llmkit eval --json` and `llmkit generate` print. Others check the error paths,
and that SIGTERM leaves a checkpoint that `--resume` continues from.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import signal
import time
from pathlib import Path

import pytest
import torch

from llmkit.tokenizer import Tokenizer
from tests.e2e.helpers import one_line_error

pytestmark = pytest.mark.slow

N = 20  # steps of the first run; the resumed run goes on to 2N
VAL_EVERY = 10
# The model shape goes into llmkit.yaml, as `generate` reads it from there (it takes no -o);
# the schedule is given with -o, for these runs only.
SHAPE = {"n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 32}
RUN_OPTIONS = [f"{key}={value}" for key, value in {
    "tokenizer.vocab_size": 300,
    "training.batch_size": 8,
    "training.warmup_steps": 4,
    "training.val_every_steps": VAL_EVERY,
    "training.val_batches": 4,
    "training.checkpoint_every_steps": VAL_EVERY,
    "logging.log_every_steps": 5,
    "logging.sample_every_steps": VAL_EVERY,
}.items()]
OVERRIDES = [arg for option in RUN_OPTIONS for arg in ("-o", option)]


def _set_model_shape(config: Path) -> None:
    """Edit the shape values in llmkit.yaml, as a user would; comments stay untouched."""
    text = config.read_text(encoding="utf-8")
    for key, value in SHAPE.items():
        text, n = re.subn(rf"^(  {key}:) .*$", rf"\g<1> {value}", text, flags=re.M)
        assert n == 1, key
    config.write_text(text, encoding="utf-8")


def _comment_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.lstrip().startswith("#")]


@pytest.fixture(scope="module")
def project(tmp_path_factory, llmkit, read_events) -> dict:
    """A project scaffolded by `llmkit new`, trained N steps, then resumed to 2N."""
    parent = tmp_path_factory.mktemp("lm-e2e")
    llmkit("new", "proj", cwd=parent)
    root = parent / "proj"
    scaffolded = (root / "llmkit.yaml").read_text(encoding="utf-8")
    _set_model_shape(root / "llmkit.yaml")

    first = llmkit("train", "--max-steps", str(N), *OVERRIDES, cwd=root, timeout=180)
    run_dir = root / "runs" / "proj" / "version_0"
    first_steps = [s for s, _ in read_events(run_dir).scalars("train/loss")]
    resumed = llmkit("train", "--resume", "--max-steps", str(2 * N), *OVERRIDES, cwd=root,
                     timeout=180)
    return {"root": root, "run_dir": run_dir, "scaffolded": scaffolded, "first": first,
            "first_steps": first_steps, "resumed": resumed}


def test_training_logs_the_tensorboard_tags(project, read_events) -> None:
    events = read_events(project["run_dir"])
    expected = {"train/loss", "val/loss", "val/ppl", "val/bits_per_token",
                "throughput/tokens_per_sec"}
    assert expected <= events.scalar_tags, sorted(events.scalar_tags)
    assert any(tag.startswith("lr-") for tag in events.scalar_tags), sorted(events.scalar_tags)

    losses = [v for _, v in events.scalars("train/loss")]
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0] - 0.2  # it learned something
    # A validation every VAL_EVERY steps, at Lightning's 0-based step index.
    val = events.scalars("val/loss")
    assert [s for s, _ in val] == list(range(VAL_EVERY - 1, 2 * N, VAL_EVERY))
    for (_, loss), (_, ppl), (_, bits) in zip(val, events.scalars("val/ppl"),
                                              events.scalars("val/bits_per_token"), strict=True):
        assert ppl == pytest.approx(math.exp(loss), rel=1e-4)
        assert bits == pytest.approx(loss / math.log(2), rel=1e-4)
    assert all(v > 0 for _, v in events.scalars("throughput/tokens_per_sec"))

    assert "samples/generated" in events.text_tags, sorted(events.text_tags)
    samples = events.texts("samples/generated")
    assert [s for s, _ in samples] == list(range(VAL_EVERY, 2 * N + 1, VAL_EVERY))
    assert all("⟶" in text and len(text) > 40 for _, text in samples)  # prompt ⟶ generation


def test_vocab_size_is_synced_into_the_config_with_comments_kept(project) -> None:
    root = project["root"]
    text = (root / "llmkit.yaml").read_text(encoding="utf-8")
    tok = Tokenizer.load(root / "tokenizer" / "tokenizer.json")
    assert 259 < tok.vocab_size <= 300  # BPE: 256 bytes, 3 specials, some merges
    (synced,) = re.findall(r"^  vocab_size: (.*)$", text.split("\nmodel:")[1], flags=re.M)
    assert int(synced) == tok.vocab_size
    assert _comment_lines(text) == _comment_lines(project["scaffolded"])
    assert "model.vocab_size: null -> " + str(tok.vocab_size) in project["first"].stdout


def test_run_folder_holds_configs_and_checkpoints(project) -> None:
    run_dir = project["run_dir"]
    assert (run_dir / "llmkit.yaml").read_text() == (project["root"] / "llmkit.yaml").read_text()
    assert "n_layer: 2" in (run_dir / "config.resolved.yaml").read_text()
    checkpoints = run_dir / "checkpoints"
    assert (checkpoints / "last.ckpt").is_file()
    assert list(checkpoints.glob("best-*.ckpt"))
    assert not [p for p in checkpoints.iterdir() if p.name.endswith(".tmp")]
    last = torch.load(checkpoints / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["global_step"] == 2 * N


def test_resume_continues_the_same_run(project, read_events) -> None:
    run_dir = project["run_dir"]
    assert sorted(p.name for p in run_dir.parent.iterdir()) == ["version_0"]  # no version_1
    assert f"resumed from {run_dir / 'checkpoints' / 'last.ckpt'}" in project["resumed"].stdout
    assert f"training finished at step {2 * N}" in project["resumed"].stdout

    # Lightning logs train/loss at the 0-based step index: the first run reached N - 1,
    # the resumed one goes on from there to 2N - 1, repeating no step.
    assert max(project["first_steps"]) == N - 1
    steps = [s for s, _ in read_events(run_dir).scalars("train/loss")]
    assert steps == sorted(set(steps)) and max(steps) == 2 * N - 1
    assert len(list(run_dir.glob("events.out.tfevents.*"))) == 2  # one per session


def test_eval_prints_json_metrics_of_the_best_checkpoint(project, llmkit, read_events) -> None:
    proc = llmkit("eval", "--json", *OVERRIDES, cwd=project["root"])
    metrics = json.loads(proc.stdout)
    for key in ("val/loss", "val/ppl", "val/bits_per_token", "val/bits_per_byte"):
        assert isinstance(metrics[key], float) and math.isfinite(metrics[key]), key
    ckpt = Path(metrics["checkpoint"])
    assert ckpt.parent == project["run_dir"] / "checkpoints" and ckpt.name.startswith("best-")
    # The same validation windows and weights as the best validation of the run.
    best = min(v for _, v in read_events(project["run_dir"]).scalars("val/loss"))
    assert metrics["val/loss"] == pytest.approx(best, rel=1e-4)
    assert metrics["val/ppl"] == pytest.approx(math.exp(metrics["val/loss"]), rel=1e-6)
    # BPE tokens hold more than one byte of text on average.
    assert 0 < metrics["val/bits_per_byte"] < metrics["val/bits_per_token"]


def test_generate_continues_the_prompt_reproducibly(project, llmkit) -> None:
    def generate(seed: int) -> str:
        args = ("generate", "--prompt", "ROMEO:", "--max-new-tokens", "20", "--seed", str(seed))
        return llmkit(*args, cwd=project["root"]).stdout

    first, again, other = generate(1), generate(1), generate(2)
    assert first.startswith("ROMEO:") and len(first.strip()) > len("ROMEO:")
    assert again == first
    assert other != first  # the seed is what makes it repeat, not greedy decoding


def test_generate_needs_an_lm_project_and_a_checkpoint(tmp_path: Path, llmkit) -> None:
    llmkit("new", "spans", "--task", "span", cwd=tmp_path)
    line = one_line_error(llmkit("generate", "--prompt", "x", cwd=tmp_path / "spans", ok=False))
    assert "needs a language-model project" in line and "llmkit predict" in line

    llmkit("new", "fresh", cwd=tmp_path)
    line = one_line_error(llmkit("generate", "--prompt", "x", cwd=tmp_path / "fresh", ok=False))
    assert "train first with `llmkit train`" in line


def test_resume_without_a_run_says_what_to_do(tmp_path: Path, llmkit) -> None:
    llmkit("new", "fresh", cwd=tmp_path)
    started = time.monotonic()
    proc = llmkit("train", "--resume", cwd=tmp_path / "fresh", ok=False)
    line = one_line_error(proc)
    assert "nothing to resume" in line and "start with `llmkit train`" in line
    assert "last.ckpt" in line
    assert not (tmp_path / "fresh" / "tokenizer").exists()  # failed before any slow step
    assert time.monotonic() - started < 30


def test_sigterm_saves_a_checkpoint_that_resume_continues(project, tmp_path: Path, llmkit,
                                                          start_llmkit, read_events) -> None:
    # A copy of the trained project without its runs: tokenizer and data cache are reused.
    root = tmp_path / "proj"
    shutil.copytree(project["root"], root, ignore=shutil.ignore_patterns("runs"))
    options = [*OVERRIDES, "-o", "training.checkpoint_every_steps=5"]
    proc = start_llmkit("train", "--max-steps", "100000", *options, cwd=root)
    checkpoints = root / "runs" / "proj" / "version_0" / "checkpoints"
    deadline = time.monotonic() + 120
    try:
        while not (checkpoints / "last.ckpt").exists():  # the first save at step 5
            assert proc.poll() is None, (root / "llmkit.err").read_text()
            assert time.monotonic() < deadline, "no checkpoint within 120 s"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        returncode = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    err = (root / "llmkit.err").read_text()
    assert returncode != 0, err
    assert "Traceback" not in err
    error = err.strip().splitlines()[-1]
    match = re.fullmatch(r"Error: training interrupted at step (\d+): saved step \1 to (.+); "
                         r"continue with `llmkit train --resume`", error)
    assert match, err[-2000:]
    step = int(match[1])
    assert Path(match[2]) == checkpoints / "last.ckpt"
    assert not [p for p in checkpoints.iterdir() if p.name.endswith(".tmp")]
    saved = torch.load(checkpoints / "last.ckpt", map_location="cpu", weights_only=True)
    assert saved["global_step"] == step >= 5

    target = 5 * (step // 5 + 2)  # on the train/loss logging grid (every 5 steps)
    resumed = llmkit("train", "--resume", "--max-steps", str(target), *options, cwd=root)
    assert f"training finished at step {target}" in resumed.stdout
    steps = [s for s, _ in read_events(checkpoints.parent).scalars("train/loss")]
    assert max(steps) == target - 1
    assert sorted(p.name for p in checkpoints.parent.parent.iterdir()) == ["version_0"]
