"""Keep `last.ckpt` current: every N steps, at the end, and on Ctrl-C or SIGTERM."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.utilities.exceptions import SIGTERMException

from llmkit.trainer.callbacks.steps import OptimizerSteps


class LastCheckpoint(L.Callback):
    """Save `<dirpath>/last.ckpt` every `every_n_steps` optimizer steps and when stopped.

    The checkpoint is written right after an optimizer step (never after a micro-batch in
    the middle of a gradient accumulation), so `llmkit train --resume` continues with
    exactly the batches an uninterrupted run would have seen. On Ctrl-C or SIGTERM the
    current state is saved, unless the interruption came inside an optimizer update (the
    weights could be half updated): then the previous `last.ckpt` is kept. An interruption
    between the micro-batches of an accumulation saves the data position after the last
    micro-batch, so the first step after a resume uses only the remaining micro-batches.
    On any other error nothing is written, so the last good checkpoint stays as it was (a
    NaN loss must not overwrite it).

    Args:
        dirpath: the run's checkpoint folder.
        every_n_steps: save interval in optimizer steps (>= 1).

    Example:
        >>> cb = LastCheckpoint(Path("runs/demo/version_0/checkpoints"), every_n_steps=500)
    """

    def __init__(self, dirpath: Path, every_n_steps: int) -> None:
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1, got {every_n_steps}")
        self.path = Path(dirpath) / "last.ckpt"
        self.every_n_steps = every_n_steps
        self.saved_step = -1  # the step of the last save of this run (-1: none yet)
        self.interrupted = False
        self._steps = OptimizerSteps()
        self._updating = False  # between on_before_optimizer_step and the end of the batch

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule,
                             batch, batch_idx: int) -> None:
        self._steps.batch_started(trainer)

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule,
                                 optimizer: torch.optim.Optimizer) -> None:
        self._updating = True

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           outputs, batch, batch_idx: int) -> None:
        self._updating = False
        if self._steps.stepped(trainer) and trainer.global_step % self.every_n_steps == 0:
            self._save(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._save(trainer)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule,
                     exception: BaseException) -> None:
        if isinstance(exception, (KeyboardInterrupt, SIGTERMException)):
            self.interrupted = True
            if not self._updating:
                self._save(trainer)

    def _save(self, trainer: L.Trainer) -> None:
        step = trainer.global_step
        if step == self.saved_step or step == 0:
            return  # once per optimizer step; nothing worth keeping before the first
        # weights_only=False: the full training state (Lightning logs a line when unset)
        trainer.save_checkpoint(self.path, weights_only=False)
        self.saved_step = step
