"""Keep `last.ckpt` current: every N steps, at the end, and on Ctrl-C or SIGTERM."""

from __future__ import annotations

from pathlib import Path

import lightning as L
from lightning.pytorch.utilities.exceptions import SIGTERMException


class LastCheckpoint(L.Callback):
    """Save `<dirpath>/last.ckpt` every `every_n_steps` optimizer steps and when stopped.

    The checkpoint is written right after an optimizer step, so `llmkit train --resume`
    continues with exactly the batches an uninterrupted run would have seen. On Ctrl-C or
    SIGTERM the last completed step is saved; on any other error nothing is written, so the
    last good checkpoint stays as it was (a NaN loss must not overwrite it).

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
        self._saved_step = -1
        self.interrupted = False

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           outputs, batch, batch_idx: int) -> None:
        step = trainer.global_step
        if step % self.every_n_steps == 0:
            self._save(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._save(trainer)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule,
                     exception: BaseException) -> None:
        if isinstance(exception, (KeyboardInterrupt, SIGTERMException)):
            self.interrupted = True
            self._save(trainer)

    def _save(self, trainer: L.Trainer) -> None:
        step = trainer.global_step
        if step == self._saved_step or step == 0:
            return  # once per optimizer step; nothing worth keeping before the first
        trainer.save_checkpoint(self.path)
        self._saved_step = step
