"""What the LM and span LightningModules share: optimizer, schedule, checkpoint contents."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

from llmkit.config import Config
from llmkit.trainer.optim import build_optimizer


class TaskModule(L.LightningModule):
    """Base of the task modules: holds the config, the wrapped `model` and checkpoint meta.

    Args:
        cfg: the project config (training hyper-parameters are read from it).
        meta: the `llmkit` entry stored in every checkpoint (see checkpoint.checkpoint_meta).
    """

    model: torch.nn.Module

    def __init__(self, cfg: Config, meta: dict[str, Any]) -> None:
        super().__init__()
        self.cfg = cfg
        self.meta = meta
        self._rng_before_batch: dict[str, Any] | None = None

    def training_loss(self, batch: Any) -> torch.Tensor:
        """The task's loss of one training batch, as training computes it (label smoothing
        included). The one "batch -> loss" of the task: the training step, the NaN guard's
        re-run and `llmkit smoke` all call it."""
        raise NotImplementedError

    def configure_optimizers(self):
        fused = self.device.type in ("cuda", "cpu")  # AdamW's fused kernel (CPU: torch 2.4+)
        optimizer, scheduler = build_optimizer(self.model, self.cfg.training, fused=fused)
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        # The RNG before this batch draws its dropout masks: a Ctrl-C inside the batch
        # saves it, as the batch runs again on --resume.
        self._rng_before_batch = _rng_state()

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        self._rng_before_batch = None  # the next batch records its own

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["llmkit"] = dict(self.meta)
        # Lightning keeps no RNG state; dropout must continue exactly on --resume.
        rng = _rng_state()
        trainer = self._trainer
        if trainer is not None and trainer.interrupted:  # the save on Ctrl-C or SIGTERM
            redo = _redo_interrupted_work(checkpoint, trainer)
            if redo == "batch" and self._rng_before_batch is not None:
                rng = self._rng_before_batch
        checkpoint["llmkit"]["rng"] = rng
        # processes that each trained on their own batches (tokens seen, in export's card)
        checkpoint["llmkit"]["world_size"] = self.trainer.world_size

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("llmkit", {}).get("rng")
        if state is not None:
            _set_rng_state(state)


def _redo_interrupted_work(checkpoint: dict[str, Any], trainer: L.Trainer) -> str | None:
    """Make a checkpoint saved on Ctrl-C resume by running the interrupted work again.

    Ctrl-C can land inside a training batch (its weights update never happened: the data
    position and the RNG are those from before it) or inside a validation. Lightning's loop
    counters record such work as started, and on restore would skip or miscount it: every
    later step logged one too high after a batch, the validation never finished after a
    validation. Rewritten here as "not started", the batch or the whole validation runs
    again on `--resume`, as in a run that was never interrupted. Returns what is redone.
    """
    loops = checkpoint["loops"]["fit_loop"]
    batches = loops["epoch_loop.batch_progress"]
    if batches["total"]["ready"] > batches["total"]["processed"]:
        for counts in (batches["total"], batches["current"]):
            counts["ready"] = counts["started"] = counts["processed"]
        return "batch"
    if trainer.validating and not trainer.sanity_checking:
        val = loops["epoch_loop.val_loop.batch_progress"]
        before = val["total"]["completed"] - val["current"]["completed"]
        # Lightning re-runs a validation it finds "started, nothing processed" from its start.
        val["total"].update(ready=before + 1, started=before + 1, processed=before,
                            completed=before)
        val["current"].update(ready=1, started=1, processed=0, completed=0)
        val["is_last_batch"] = False
        return "validation"
    return None


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
