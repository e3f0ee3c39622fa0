"""What a training run produced, or why it stopped early, in the words the CLI prints."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import lightning as L

from llmkit.errors import LlmkitError
from llmkit.trainer.callbacks.checkpointing import LastCheckpoint


class TrainingInterrupted(LlmkitError):
    """Ctrl-C or SIGTERM stopped training; the message says what `last.ckpt` holds."""

    @classmethod
    def at(cls, step: int, last: LastCheckpoint) -> TrainingInterrupted:
        """The error for an interruption at `step`, saying what `last` holds and what next."""
        if last.saved_step == step:
            saved = f"saved step {step} to {last.path}"
        elif last.path.is_file():
            saved = f"stopped inside an optimizer update, so {last.path} keeps an earlier step"
        else:
            saved = "no checkpoint was saved yet"
        resume = "; continue with `llmkit train --resume`" if last.path.is_file() else ""
        return cls(f"training interrupted at step {step}: {saved}{resume}")


@dataclass
class RunResult:
    """What a training run produced, for the CLI's closing lines and for tests."""

    run_dir: Path
    last_checkpoint: Path
    best_checkpoint: Path | None
    best_val_loss: float | None
    global_step: int
    notes: list[str] = field(default_factory=list)
    global_rank: int = 0

    @classmethod
    def from_trainer(cls, trainer: L.Trainer, run_dir: Path, last: LastCheckpoint,
                     notes: list[str]) -> RunResult:
        """The result of a finished `trainer.fit`: its best and last checkpoints."""
        best = trainer.checkpoint_callback
        best_path = Path(best.best_model_path) if best and best.best_model_path else None
        score = best.best_model_score if best else None
        return cls(run_dir=run_dir, last_checkpoint=last.path, best_checkpoint=best_path,
                   best_val_loss=float(score) if score is not None else None,
                   global_step=trainer.global_step, notes=notes,
                   global_rank=trainer.global_rank)

    def summary(self) -> str:
        """The closing lines of `llmkit train` (empty on ranks other than 0)."""
        if self.global_rank != 0:
            return ""
        lines = [*self.notes]
        lines.append(f"training finished at step {self.global_step}")
        if self.best_val_loss is not None:
            lines.append(f"best val/loss {self.best_val_loss:.4f}: {self.best_checkpoint}")
        lines.append(f"last checkpoint: {self.last_checkpoint}")
        lines.append(f"TensorBoard logs: {self.run_dir}")
        lines.append(f"open them with: tensorboard --logdir {self.run_dir.parent} (the "
                     f"CUSTOM SCALARS tab has the overview, HPARAMS compares runs)")
        return "\n".join(lines)
