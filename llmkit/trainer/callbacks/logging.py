"""Writing to the run's loggers from callbacks, outside Lightning's `self.log` grid."""

from __future__ import annotations

import lightning as L


def add_text(trainer: L.Trainer, tag: str, text: str) -> None:
    """Write a text summary to every TensorBoard-like logger (rank zero only)."""
    if not trainer.is_global_zero:
        return
    for logger in trainer.loggers:
        experiment = getattr(logger, "experiment", None)
        if experiment is not None and hasattr(experiment, "add_text"):
            experiment.add_text(tag, text, global_step=trainer.global_step)
