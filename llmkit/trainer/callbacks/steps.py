"""Whether a training batch stepped the optimizer (with gradient accumulation most do not)."""

from __future__ import annotations

import lightning as L


class OptimizerSteps:
    """Call `batch_started` in `on_train_batch_start`, then `stepped` in `on_train_batch_end`.

    `trainer.global_step` counts optimizer steps: it moves only on the batch that applies
    the accumulated gradients, so comparing it across the batch tells that batch apart.

    Example:
        >>> self._steps = OptimizerSteps()
        >>> def on_train_batch_start(self, trainer, *args): self._steps.batch_started(trainer)
        >>> def on_train_batch_end(self, trainer, *args):
        ...     if self._steps.stepped(trainer): ...
    """

    def __init__(self) -> None:
        self._at_start: int | None = None

    def batch_started(self, trainer: L.Trainer) -> None:
        """Remember the step count before this batch."""
        self._at_start = trainer.global_step

    def stepped(self, trainer: L.Trainer) -> bool:
        """True when the batch that just ended applied an optimizer step."""
        return trainer.global_step != self._at_start
