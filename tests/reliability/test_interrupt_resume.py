"""Ctrl-C and `--resume` continue exactly, with dropout on, wherever the Ctrl-C lands.

A run interrupted at several points of one optimizer step (before its forward pass,
inside it after dropout has drawn masks, in the loss, in a validation pass) and then
resumed must log the same train and validation losses as the run that was never
interrupted: the checkpoint written on Ctrl-C must hold the RNG state from before the
interrupted step, which is run again on resume.
"""

from __future__ import annotations

import shutil
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import pytest
from conftest import RunEvents

from llmkit.config import Config
from llmkit.trainer.run import TrainingInterrupted, train

STOP = 3  # the interruption comes during the optimizer step after step STOP
CONFIG = {
    "model": {"dropout": 0.1},
    "training": {"max_steps": 6, "batch_size": 4, "warmup_steps": 1, "val_every_steps": 2,
                 "val_batches": 2, "checkpoint_every_steps": 100},
    "logging": {"log_every_steps": 1, "sample_every_steps": 100, "health_every_steps": 100},
}


def _quiet(_: str) -> None:
    pass


class CtrlC(L.Callback):
    """Raise KeyboardInterrupt (what SIGINT raises) once, at one point of step STOP+1."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.fired = False

    def _fire(self, trainer: L.Trainer, where: str, step: int = STOP) -> None:
        if where == self.where and trainer.global_step == step and not self.fired:
            self.fired = True
            raise KeyboardInterrupt

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._fire(trainer, "batch start")

    def on_fit_start(self, trainer, pl_module) -> None:
        def after(name: str) -> Callable[..., None]:
            def hook(module: Any, args: Any, out: Any) -> None:
                if module.training:
                    self._fire(trainer, name)
            return hook
        model = pl_module.model
        model.transformer.h[0].register_forward_hook(after("first block"))
        model.transformer.ln_f.register_forward_hook(after("last norm"))

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx,
                                  dataloader_idx=0) -> None:
        if not trainer.sanity_checking:
            self._fire(trainer, "validation", step=STOP + 1)  # validations follow even steps


@pytest.fixture
def restore_sigint():
    # Lightning ignores SIGINT after a KeyboardInterrupt (against a second Ctrl-C): put
    # pytest's handler back afterwards.
    handler = signal.getsignal(signal.SIGINT)
    yield
    signal.signal(signal.SIGINT, handler)


def _losses(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    # By step: the reader takes a resumed run's event files in name order, and two files
    # written in the same second by one process can sort "....9" after "....10".
    events = RunEvents(run_dir)
    return {tag: sorted(events.scalars(tag)) for tag in ("train/loss", "val/loss")}


@pytest.mark.parametrize("where", ["first block", "last norm", "batch start", "validation"])
def test_ctrl_c_and_resume_with_dropout_repeat_the_uninterrupted_run(
        tiny_project: Callable[..., Config], where: str, restore_sigint) -> None:
    cfg = tiny_project(config=CONFIG, name="interrupted")
    straight_root = cfg.root.parent / "straight"
    shutil.copytree(cfg.root, straight_root)

    ctrl_c = CtrlC(where)
    step = STOP + 1 if where == "validation" else STOP
    with pytest.raises(TrainingInterrupted, match=f"training interrupted at step {step}"):
        train(cfg.root, log=_quiet, progress=False, extra_callbacks=[ctrl_c])
    assert ctrl_c.fired
    resumed = train(cfg.root, resume=True, log=_quiet, progress=False)
    straight = train(straight_root, log=_quiet, progress=False)

    got, want = _losses(resumed.run_dir), _losses(straight.run_dir)
    assert [s for s, _ in want["train/loss"]] == list(range(6))
    for tag in ("train/loss", "val/loss"):
        assert [s for s, _ in got[tag]] == [s for s, _ in want[tag]], tag
        for (step, a), (_, b) in zip(got[tag], want[tag], strict=True):
            assert a == pytest.approx(b, rel=1e-6), f"{tag} at step {step}: {a} vs {b}"
