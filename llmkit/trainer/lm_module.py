"""The LightningModule of the causal language-model task."""

from __future__ import annotations

from typing import Any

import torch

from llmkit.config import Config
from llmkit.metrics.lm import validation_metrics
from llmkit.models import CausalLM, GPTConfig
from llmkit.trainer.task import TaskModule


class LMModule(TaskModule):
    """Trains a `CausalLM` on `(x, y)` windows and logs the DESIGN.md tags.

    Args:
        cfg: the project config (training hyper-parameters are read from it).
        gpt: the model shape, with the tokenizer's real vocabulary size.
        meta: the `llmkit` entry stored in every checkpoint (see checkpoint.checkpoint_meta).
    """

    def __init__(self, cfg: Config, gpt: GPTConfig, meta: dict[str, Any]) -> None:
        super().__init__(cfg, meta)
        self.model = CausalLM(gpt)
        self._val_sum: torch.Tensor | None = None
        self._val_count = 0

    def training_loss(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x, y = batch
        _, loss = self.model(x, y, label_smoothing=self.cfg.training.label_smoothing)
        return loss

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int):
        # train/loss is logged by the TrainLoss callback: no device sync per micro-batch
        return self.training_loss(batch)

    def on_validation_epoch_start(self) -> None:
        self._val_sum = torch.zeros((), device=self.device, dtype=torch.float64)
        self._val_count = 0

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        _, loss = self.model(x, y)  # no label smoothing: val loss is the true cross-entropy
        assert self._val_sum is not None
        self._val_sum += loss.detach().double() * y.numel()
        self._val_count += y.numel()

    def on_validation_epoch_end(self) -> None:
        assert self._val_sum is not None
        total = self.trainer.strategy.reduce(self._val_sum, reduce_op="sum")
        count = self.trainer.strategy.reduce(
            torch.tensor(float(self._val_count), device=self.device, dtype=torch.float64),
            reduce_op="sum")
        ce = float(total / count.clamp_min(1.0))
        # Every rank holds the same numbers now; sync_dist averages them (a no-op) and
        # keeps Lightning from warning that epoch-level metrics are not synchronised.
        self.log_dict(validation_metrics(ce), prog_bar=False, sync_dist=True)
        self.log("val_loss", ce, prog_bar=True, logger=False, sync_dist=True)  # for the bar
