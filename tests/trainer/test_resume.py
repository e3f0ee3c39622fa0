"""`llmkit train --resume` continues a run exactly: N steps + resume to 2N is the same run
as 2N steps in one go (losses, learning rates and validation, step by step), and a
checkpoint that does not fit the configured model or tokenizer is refused, naming both."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import RunEvents

from llmkit.checkpoint import load_checkpoint
from llmkit.config import Config
from llmkit.errors import CheckpointError, VocabMismatchError
from llmkit.tokenizer import Tokenizer
from llmkit.trainer.checkpoint_io import AtomicCheckpointIO
from llmkit.trainer.run import RunResult, train

N = 4  # optimizer steps before the stop; the schedule runs to 2N
ACCUM = 2

# Dropout and accumulation make the comparison sensitive to everything a resume must
# restore: the RNG (dropout masks), the data position (which micro-batches make up each
# step), the optimizer and the schedule. The stop at N falls on a checkpoint and a
# validation step; samples and health measurements fall between.
CONFIG = {
    "model": {"dropout": 0.1},
    "training": {"max_steps": 2 * N, "grad_accum": ACCUM, "batch_size": 4, "warmup_steps": 2,
                 "val_every_steps": 2, "val_batches": 2, "checkpoint_every_steps": N},
    "logging": {"log_every_steps": 1, "sample_every_steps": 3, "health_every_steps": 3},
}


def _quiet(_: str) -> None:
    pass


def _scalars(run_dir: Path, prefix: str) -> dict[str, list[tuple[int, float]]]:
    """Every scalar series of the run whose tag starts with `prefix`: [(step, value)]."""
    events = RunEvents(run_dir)
    return {tag: events.scalars(tag) for tag in events.scalar_tags if tag.startswith(prefix)}


def _assert_same_series(got: list[tuple[int, float]], want: list[tuple[int, float]],
                        tag: str, rel: float) -> None:
    assert [s for s, _ in got] == [s for s, _ in want], f"{tag}: logged at other steps"
    for (step, a), (_, b) in zip(got, want, strict=True):
        assert a == pytest.approx(b, rel=rel), f"{tag} differs at step {step}: {a} vs {b}"


@pytest.fixture
def saved_checkpoints(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Records what each checkpoint written from now on says about step and data position."""
    saved: list[dict[str, Any]] = []
    real_save = AtomicCheckpointIO.save_checkpoint

    def save(self, checkpoint, path, storage_options=None):
        saved.append({"file": Path(path).name, "step": checkpoint["global_step"],
                      "train_batches": checkpoint["LlmkitDataModule"]["train_batches"]})
        real_save(self, checkpoint, path, storage_options)

    monkeypatch.setattr(AtomicCheckpointIO, "save_checkpoint", save)
    return saved


def _stop_resume_and_straight(tiny_project: Callable[..., Config], task: str = "lm"
                              ) -> tuple[RunResult, RunResult, RunResult]:
    """The same project trained twice: stopped at N then resumed, and in one go to 2N."""
    cfg = tiny_project(task, config=CONFIG, name="resumed")
    straight_root = cfg.root.parent / "straight"
    shutil.copytree(cfg.root, straight_root)
    first = train(cfg.root, stop_at=N, log=_quiet, progress=False)
    resumed = train(cfg.root, resume=True, log=_quiet, progress=False)
    straight = train(straight_root, log=_quiet, progress=False)
    return first, resumed, straight


def test_span_stop_and_resume_repeats_the_uninterrupted_run(tiny_project) -> None:
    # Span batches are drawn from shuffled epochs; the resumed run must continue the same
    # stream of batches (not restart the epoch) for the losses to match.
    _, resumed, straight = _stop_resume_and_straight(tiny_project, task="span")
    got, want = _scalars(resumed.run_dir, "train/loss"), _scalars(straight.run_dir, "train/loss")
    assert [s for s, _ in want["train/loss"]] == list(range(2 * N))
    _assert_same_series(got["train/loss"], want["train/loss"], "train/loss", rel=1e-5)


def test_stop_and_resume_repeats_the_uninterrupted_run(tiny_project, saved_checkpoints) -> None:
    first, resumed, straight = _stop_resume_and_straight(tiny_project)
    assert first.global_step == N
    assert resumed.global_step == straight.global_step == 2 * N
    assert resumed.run_dir == first.run_dir  # the same run folder and TensorBoard run
    assert [p.name for p in resumed.run_dir.parent.iterdir()] == ["version_0"]

    got, want = _scalars(resumed.run_dir, "train/loss"), _scalars(straight.run_dir, "train/loss")
    # Lightning logs train/loss at the 0-based index of the optimizer step: 0 .. 2N-1,
    # each step once (the resumed run neither repeats nor skips one).
    assert [s for s, _ in want["train/loss"]] == list(range(2 * N))
    _assert_same_series(got["train/loss"], want["train/loss"], "train/loss", rel=1e-5)

    got_lr, want_lr = _scalars(resumed.run_dir, "lr-"), _scalars(straight.run_dir, "lr-")
    assert want_lr and set(got_lr) == set(want_lr)
    for tag in want_lr:
        # (LearningRateMonitor logs at every micro-batch: each step appears ACCUM times.)
        assert sorted({s for s, _ in want_lr[tag]}) == list(range(2 * N))
        _assert_same_series(got_lr[tag], want_lr[tag], tag, rel=1e-6)
    assert len({v for _, v in want_lr["lr-AdamW/pg1"]}) > 2  # warmup and decay: not flat

    # Callbacks that act every N optimizer steps do so once per step, not once per
    # micro-batch (the first micro-batch after the resume ends still at step N).
    throughput = _scalars(resumed.run_dir, "throughput/")["throughput/tokens_per_sec"]
    assert [s for s, _ in throughput] == list(range(1, 2 * N + 1))

    # Validation after the stop is not run twice, and sees the same weights.
    got_val, want_val = _scalars(resumed.run_dir, "val/"), _scalars(straight.run_dir, "val/")
    assert [s for s, _ in want_val["val/loss"]] == [1, 3, 5, 7]
    for tag in ("val/loss", "val/ppl"):
        _assert_same_series(got_val[tag], want_val[tag], tag, rel=1e-5)

    # Every checkpoint of the stopped and the resumed run was written on a step boundary:
    # its data position is whole steps of micro-batches, so a resume from any of them is
    # exact (a checkpoint after the first micro-batch of a resumed run would not be).
    assert saved_checkpoints
    for saved in saved_checkpoints:
        assert saved["train_batches"] == saved["step"] * ACCUM, saved


def test_resume_refuses_a_different_model_shape(tiny_project: Callable[..., Config]) -> None:
    cfg = tiny_project(config=CONFIG)
    train(cfg.root, stop_at=2, log=_quiet, progress=False)
    with pytest.raises(CheckpointError, match=r"model\.n_layer: checkpoint 2, config 3"):
        train(cfg.root, ["model.n_layer=3"], resume=True, log=_quiet, progress=False)


def test_resume_refuses_a_different_tokenizer(tiny_project: Callable[..., Config]) -> None:
    cfg = tiny_project(config=CONFIG)
    run = train(cfg.root, stop_at=2, log=_quiet, progress=False)
    old_vocab = load_checkpoint(run.last_checkpoint)["llmkit"]["vocab_size"]
    # New characters in the data, and the tokenizer retrained on it: a bigger vocabulary.
    data = cfg.root / "data" / "train.txt"
    data.write_text(data.read_text(encoding="utf-8") + "\nXYZ QJV 0123456789\n",
                    encoding="utf-8")
    cfg.path(cfg.tokenizer.path).unlink()

    with pytest.raises(VocabMismatchError) as err:
        train(cfg.root, resume=True, log=_quiet, progress=False)
    new_vocab = Tokenizer.load(cfg.path(cfg.tokenizer.path)).vocab_size
    assert new_vocab > old_vocab
    assert f"vocab size {old_vocab}" in str(err.value)
    assert f"vocab size {new_vocab}" in str(err.value)
    assert "without --resume" in str(err.value)  # ... and what to do instead
