"""`train/loss` with one device sync per logging interval, and the progress bar showing it.

Lightning's `self.log("train/loss", loss, prog_bar=True)` turns the loss into a Python
number at every micro-batch for the bar (a device-to-host sync each), and once more when
the loggers write it. Here the training step only returns its loss; `TrainLoss` keeps the
step's micro-batch losses on the device, converts their mean once every
`log_every_steps`, writes it to the loggers and hands the same number to `LossBar`.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import TQDMProgressBar

from llmkit.trainer.callbacks.steps import OptimizerSteps


class TrainLoss(L.Callback):
    """Log `train/loss`, the mean loss of an optimizer step's micro-batches, every N steps.

    Logged at the 0-based index of the optimizer step (as Lightning's own step logging
    does). `value` holds the latest logged number for the progress bar.

    Args:
        log_every_steps: logging interval in optimizer steps (>= 1).

    Example:
        >>> trainer = L.Trainer(callbacks=[TrainLoss(10), LossBar(10)])
    """

    def __init__(self, log_every_steps: int) -> None:
        if log_every_steps < 1:
            raise ValueError(f"log_every_steps must be >= 1, got {log_every_steps}")
        self.log_every_steps = log_every_steps
        self.value: float | None = None
        self._sum: torch.Tensor | None = None  # on the device: this step's losses so far
        self._count = 0
        self._keep = False  # the step in progress is one that gets logged
        self._steps = OptimizerSteps()

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule,
                             batch: Any, batch_idx: int) -> None:
        self._steps.batch_started(trainer)
        self._keep = (trainer.global_step + 1) % self.log_every_steps == 0

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        self._add(trainer, outputs)
        if self._steps.stepped(trainer):
            self._end_step(trainer)

    def _add(self, trainer: L.Trainer, outputs: Any) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if not self._keep or not isinstance(loss, torch.Tensor):
            return  # a step that is not logged, or a skipped batch
        value = loss.detach().float()
        self._sum = value if self._sum is None else self._sum + value
        self._count += 1

    def _end_step(self, trainer: L.Trainer) -> None:
        total, count = self._sum, self._count
        self._sum, self._count = None, 0
        if total is None or trainer.global_step % self.log_every_steps:
            return
        # Lightning hands back each loss divided by the accumulation factor; undo it.
        mean = total / count * trainer.accumulate_grad_batches
        self.value = float(mean)  # this is a CPU-GPU sync point (once per interval)
        for logger in trainer.loggers:  # rank zero only (the loggers see to that)
            logger.log_metrics({"train/loss": self.value}, step=trainer.global_step - 1)


class LossBar(TQDMProgressBar):
    """A `TQDMProgressBar` that shows `TrainLoss`'s latest number as `loss` (no sync).

    Args:
        refresh_rate: redraw every N batches (>= 1); llmkit uses
            `logging.log_every_steps` x `training.grad_accum`, so that each redraw shows
            a fresh loss.

    Example:
        >>> trainer = L.Trainer(callbacks=[TrainLoss(10), LossBar(refresh_rate=10)])
    """

    def __init__(self, refresh_rate: int) -> None:
        if refresh_rate < 1:
            raise ValueError(f"refresh_rate must be >= 1, got {refresh_rate}")
        super().__init__(refresh_rate=refresh_rate)

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule
                    ) -> dict[str, Any]:
        items = super().get_metrics(trainer, pl_module)
        value = next((c.value for c in trainer.callbacks if isinstance(c, TrainLoss)), None)
        if value is not None:
            items["loss"] = f"{value:.3f}"
        return items
