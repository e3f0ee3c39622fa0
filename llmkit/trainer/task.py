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

    def training_loss(self, batch: Any) -> torch.Tensor:
        """The task's loss of one training batch, as training computes it (label smoothing
        included). The one "batch -> loss" of the task: the training step, the NaN guard's
        re-run and `llmkit smoke` all call it."""
        raise NotImplementedError

    def configure_optimizers(self):
        fused = self.device.type == "cuda"
        optimizer, scheduler = build_optimizer(self.model, self.cfg.training, fused=fused)
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["llmkit"] = dict(self.meta)
        # Lightning keeps no RNG state; dropout must continue exactly on --resume.
        checkpoint["llmkit"]["rng"] = _rng_state()
        # processes that each trained on their own batches (tokens seen, in export's card)
        checkpoint["llmkit"]["world_size"] = self.trainer.world_size

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("llmkit", {}).get("rng")
        if state is not None:
            _set_rng_state(state)


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
