"""Watch the gap between training and validation loss, and say when the model memorises.

"Loss 2.16 -> 0.003 in 500 steps" looks like success on a training curve; the validation
loss tells the truth (DESIGN.md, problem 3). After each validation this callback logs
`overfit/gap` (val - train) and `overfit/ratio` (train / val), and warns once each when:

(a) the ratio falls below a threshold: the model fits its training text far better than
    unseen text;
(b) validation loss has risen for `patience` validations in a row while training loss fell
    (the textbook overfitting curve), naming the step where the rise began and the best
    checkpoint;
(c) validation perplexity is near 1: the model reproduces the validation text, which only
    memorisation or validation text leaking into training can explain.
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch

from llmkit.console import Log
from llmkit.trainer.callbacks.logging import add_text

TEXT_TAG = "overfit/warnings"
SUMMARY_TAG = "overfit/summary"
# The warnings, by the key they are remembered under, as the summary names them.
_KINDS = {"ratio": "train/val loss ratio", "rising": "rising val loss",
          "ppl": "val ppl near 1"}


class OverfitMonitor(L.Callback):
    """Log the train/validation gap after every validation and warn when it says overfitting.

    The training loss is the mean over every batch since the previous validation (kept on
    the device, read once per validation: no per-step synchronisation), not the one noisy
    on-step value; under DDP it is averaged over ranks, so every rank decides alike.

    Warnings go to `log` (rank zero) and to TensorBoard as text under `overfit/warnings`.

    Args:
        ratio_threshold: warn when train loss / val loss falls below this (0 < x < 1).
        patience: validations in a row with rising val loss and falling train loss (>= 1).
        ppl_floor: warn when validation perplexity falls below this (> 1); None turns the
            check off (span tasks: a near-perfect span loss can be honest on easy data).
        min_gap: the ratio warning also needs val - train >= this many nats, so two tiny
            losses (0.01 vs 0.03) are not called overfitting.
        stop_on_overfit: stop training when (a) or (b) fires; the best checkpoint stays
            on disk (ModelCheckpoint keeps it).
        val_key: the validation loss in `trainer.callback_metrics`.
        log: where warnings go (the CLI passes click.echo).

    Example:
        >>> monitor = OverfitMonitor(ratio_threshold=0.5, patience=3, log=click.echo)
        >>> trainer = L.Trainer(callbacks=[monitor], logger=TensorBoardLogger("runs"))
        >>> trainer.fit(module, datamodule=data)
        >>> print(monitor.summary())
    """

    def __init__(self, ratio_threshold: float = 0.5, patience: int = 3,
                 ppl_floor: float | None = 1.5, min_gap: float = 0.1,
                 stop_on_overfit: bool = False, val_key: str = "val/loss",
                 log: Log = print) -> None:
        if not 0.0 < ratio_threshold < 1.0:
            raise ValueError(f"ratio_threshold must be in (0, 1), got {ratio_threshold}")
        if not isinstance(patience, int) or patience < 1:
            raise ValueError(f"patience must be an integer >= 1, got {patience!r}")
        if ppl_floor is not None and ppl_floor <= 1.0:
            raise ValueError(f"ppl_floor must be > 1 or None, got {ppl_floor}")
        if min_gap < 0:
            raise ValueError(f"min_gap must be >= 0, got {min_gap}")
        self.ratio_threshold = ratio_threshold
        self.patience = patience
        self.ppl_floor = ppl_floor
        self.min_gap = min_gap
        self.stop_on_overfit = stop_on_overfit
        self.val_key = val_key
        self.echo = log  # not `self.log`: Lightning sets that to the module's log()
        self.history: list[tuple[int, float, float]] = []  # (step, train loss, val loss)
        self.warnings: list[str] = []
        self._warned: set[str] = set()  # "ratio", "rising", "ppl": each warns once
        self._rises = 0  # validations in a row with rising val loss
        self._rise_from: int | None = None  # index in history where the current rise began
        self._train_sum: torch.Tensor | None = None
        self._train_batches = 0

    # --- hooks ----------------------------------------------------------------------

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit" and not trainer.loggers:
            raise RuntimeError("OverfitMonitor logs overfit/gap and overfit/ratio, but the "
                               "Trainer has no logger; pass logger=TensorBoardLogger(...)")

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        self._add_train_loss(trainer, outputs)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        self._after_validation(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        add_text(trainer, SUMMARY_TAG, self.summary())

    def state_dict(self) -> dict[str, Any]:
        return {"history": [list(h) for h in self.history], "warnings": list(self.warnings),
                "warned": sorted(self._warned), "rises": self._rises,
                "rise_from": self._rise_from}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history = [(int(s), float(t), float(v)) for s, t, v in state.get("history", [])]
        self.warnings = list(state.get("warnings", []))
        self._warned = set(state.get("warned", []))
        self._rises = int(state.get("rises", 0))
        self._rise_from = state.get("rise_from")

    # --- the work ---------------------------------------------------------------------

    def _add_train_loss(self, trainer: L.Trainer, outputs: Any) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if not isinstance(loss, torch.Tensor):
            return  # a skipped step (training_step returned None)
        # Lightning hands back the loss divided by the accumulation factor; undo it.
        value = loss.detach().float() * trainer.accumulate_grad_batches
        self._train_sum = value if self._train_sum is None else self._train_sum + value
        self._train_batches += 1

    def _train_mean(self, trainer: L.Trainer) -> float | None:
        if self._train_sum is None or self._train_batches == 0:
            return None
        mean = self._train_sum / self._train_batches
        mean = trainer.strategy.reduce(mean, reduce_op="mean")  # identity on one device
        self._train_sum, self._train_batches = None, 0
        return float(mean)  # the one synchronisation, once per validation

    def _after_validation(self, trainer: L.Trainer) -> None:
        val_t = trainer.callback_metrics.get(self.val_key)
        if val_t is None:
            keys = ", ".join(sorted(trainer.callback_metrics)) or "none"
            raise RuntimeError(f"OverfitMonitor needs {self.val_key!r} after validation; "
                               f"logged metrics: {keys}")
        train = self._train_mean(trainer)
        if train is None:
            return  # validation before any training batch (e.g. right after a resume)
        val = float(val_t)
        step = trainer.global_step
        self.history.append((step, train, val))
        gap = val - train
        ratio = train / val if val > 0 else math.inf
        for logger in trainer.loggers:
            logger.log_metrics({"overfit/gap": gap, "overfit/ratio": ratio}, step=step)

        stop = False
        if (ratio < self.ratio_threshold and gap >= self.min_gap
                and self._warn_once(trainer, "ratio", self._ratio_message(step, train, val,
                                                                          ratio))):
            stop = True
        message = self._rising_message(trainer)
        if message is not None and self._warn_once(trainer, "rising", message):
            stop = True
        if self.ppl_floor is not None and val < math.log(self.ppl_floor):
            self._warn_once(trainer, "ppl", self._ppl_message(step, val))
        if self.stop_on_overfit:
            self._maybe_stop(trainer, stop)

    def _ratio_message(self, step: int, train: float, val: float, ratio: float) -> str:
        return (f"overfitting at step {step}: train loss {train:.4f} is {ratio:.2f} x val loss "
                f"{val:.4f} (below {self.ratio_threshold:g}): the model fits its training "
                f"text much better than unseen text; use a smaller model (`llmkit size`), "
                f"more data, more dropout or weight decay, or fewer steps")

    def _rising_message(self, trainer: L.Trainer) -> str | None:
        """Update the run of rising validations; a message when it reaches `patience`."""
        if len(self.history) < 2:
            return None
        prev_val, val = self.history[-2][2], self.history[-1][2]
        if val > prev_val:
            if self._rises == 0:
                self._rise_from = len(self.history) - 2
            self._rises += 1
        else:
            self._rises, self._rise_from = 0, None
        if self._rises < self.patience or self._rise_from is None:
            return None
        start_step, start_train, start_val = self.history[self._rise_from]
        step, train, val = self.history[-1]
        if train >= start_train:
            return None  # both rising: a diverging run, not overfitting
        return (f"validation loss has risen for {self._rises} validations in a row since "
                f"step {start_step} ({start_val:.4f} -> {val:.4f} at step {step}) while "
                f"train loss fell ({start_train:.4f} -> {train:.4f}): the model is "
                f"overfitting; {self._best_checkpoint(trainer)}")

    def _ppl_message(self, step: int, val: float) -> str:
        return (f"val ppl {math.exp(val):.2f} (val loss {val:.4f}) at step {step}: the model "
                f"reproduces the validation text: memorisation, or leakage of validation "
                f"text into training (check the val overlap that `llmkit prepare` reports)")

    @staticmethod
    def _best_checkpoint(trainer: L.Trainer) -> str:
        cb = trainer.checkpoint_callback
        path = getattr(cb, "best_model_path", "") if cb is not None else ""
        score = getattr(cb, "best_model_score", None) if cb is not None else None
        if not path:
            return "no best checkpoint saved yet"
        where = f" (val/loss {float(score):.4f})" if score is not None else ""
        return f"best checkpoint: {path}{where}"

    def _warn_once(self, trainer: L.Trainer, kind: str, message: str) -> bool:
        """Report `message` unless `kind` has warned before; True when it is reported now."""
        if kind in self._warned:
            return False
        self._warned.add(kind)
        line = f"warning: {message}"
        self.warnings.append(line)
        if trainer.is_global_zero:
            self.echo(line)
        add_text(trainer, TEXT_TAG, line)
        return True

    def _maybe_stop(self, trainer: L.Trainer, stop: bool) -> None:
        # Every rank must agree, or one stops while the others wait for it forever.
        stop = trainer.strategy.reduce_boolean_decision(stop, all=False)
        if stop:
            trainer.should_stop = True
            if trainer.is_global_zero:
                self.echo("stopping: training.stop_on_overfit is set; "
                         + self._best_checkpoint(trainer))

    def summary(self) -> str:
        """One line for the end of a run: where validation loss was best, and the verdict."""
        if not self.history:
            return "overfitting monitor: no validation ran"
        step, _, best = min(self.history, key=lambda h: h[2])
        if self._warned:
            seen = "overfitting seen: " + ", ".join(_KINDS[k] for k in _KINDS if k in self._warned)
        else:
            seen = "no overfitting seen"
        _, train, val = self.history[-1]
        return (f"best val/loss {best:.4f} at step {step}; last train/val {train:.4f}/"
                f"{val:.4f}; {seen}")
