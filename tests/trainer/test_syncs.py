"""Training does not synchronise with the device per micro-batch: with the progress bar on,
the loss is converted to a Python number at most once per optimizer step, and the NaN
guard reads its one flag per step."""

from __future__ import annotations

from collections.abc import Callable

import lightning as L
import pytest
import torch

from llmkit.config import Config
from llmkit.trainer.run import train

STEPS, ACCUM = 6, 2


class _Counting(L.Callback):
    """Counts device-to-host conversions of tensors inside the training loop only."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.on = False
        self.numbers = 0  # .item(), float(), int(): how a loss becomes a number
        self.bools = 0  # bool(): how the NaN guard reads its flag
        for name in ("item", "__float__", "__int__"):
            self._patch(monkeypatch, name, "numbers")
        self._patch(monkeypatch, "__bool__", "bools")

    def _patch(self, monkeypatch: pytest.MonkeyPatch, name: str, counter: str) -> None:
        real = getattr(torch.Tensor, name)

        def counted(tensor: torch.Tensor):
            if self.on:
                setattr(self, counter, getattr(self, counter) + 1)
            return real(tensor)

        monkeypatch.setattr(torch.Tensor, name, counted)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.on = True

    def on_train_end(self, trainer, pl_module) -> None:
        self.on = False


@pytest.mark.parametrize("task", ["lm", "span"])
@pytest.mark.parametrize("log_every", [1, 3])
def test_at_most_one_loss_conversion_per_optimizer_step(
        tiny_project: Callable[..., Config], monkeypatch: pytest.MonkeyPatch, task: str,
        log_every: int) -> None:
    far = 10 * STEPS  # no validation, samples, health or checkpoints inside the run
    cfg = tiny_project(task, config={
        "training": {"max_steps": STEPS, "grad_accum": ACCUM, "batch_size": 2,
                     "val_every_steps": far, "checkpoint_every_steps": far},
        "logging": {"log_every_steps": log_every, "sample_every_steps": far,
                    "health_every_steps": far}})
    counting = _Counting(monkeypatch)
    result = train(cfg.root, log=lambda _: None, progress=True,  # the bar on
                   extra_callbacks=[counting])
    assert result.global_step == STEPS
    # Lightning's prog_bar logging used to convert the loss at every micro-batch (12 here,
    # plus the logger's own); now it is once per logging interval, shared by log and bar.
    assert counting.numbers == STEPS // log_every
    # The NaN guard: one check per optimizer step, and one weight check before the final
    # checkpoint is written.
    assert counting.bools == STEPS + 1


class _Losses(L.Callback):
    """Each optimizer step's micro-batch losses (as computed, before Lightning divides by
    the accumulation factor), by the 0-based index of the step."""

    def __init__(self) -> None:
        self.by_step: dict[int, list[float]] = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step - 1 if (batch_idx + 1) % ACCUM == 0 else trainer.global_step
        loss = outputs["loss"].detach().double() * ACCUM
        self.by_step.setdefault(step, []).append(float(loss))


def test_logged_train_loss_is_the_steps_mean_micro_batch_loss(
        tiny_project: Callable[..., Config], read_events) -> None:
    far = 10 * STEPS
    cfg = tiny_project(config={
        "training": {"max_steps": STEPS, "grad_accum": ACCUM, "batch_size": 2,
                     "val_every_steps": far, "checkpoint_every_steps": far},
        "logging": {"log_every_steps": 3, "sample_every_steps": far,
                    "health_every_steps": far}})
    losses = _Losses()
    train(cfg.root, log=lambda _: None, progress=False, extra_callbacks=[losses])
    logged = read_events(cfg.root / "runs" / cfg.project.name / "version_0")
    got = logged.scalars("train/loss")
    assert [s for s, _ in got] == [2, 5]  # the 3rd and 6th optimizer steps
    for step, value in got:
        want = sum(losses.by_step[step]) / ACCUM
        assert value == pytest.approx(want, rel=1e-6)
