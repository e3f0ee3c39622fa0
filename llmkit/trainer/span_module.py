"""The LightningModule of the span-prediction task."""

from __future__ import annotations

from typing import Any

import torch

from llmkit.config import Config
from llmkit.models import GPTConfig, SpanModel, span_loss
from llmkit.span_decode import score_validation, validate_batch
from llmkit.trainer.task import TaskModule


class SpanModule(TaskModule):
    """Trains a `SpanModel` on windows and scores whole examples at validation.

    Validation runs over every window of the validation set; each window hands over its
    best span inside its context and that span's margin over "no span", and an example's
    prediction is the best of its windows (`llmkit.data.windows.best_spans`). Predictions
    are kept (as character spans of the context) in `self.val_predictions`, keyed by the
    example's index in the validation set, so that the highlighted-samples callback can
    show them; `self.val_counts` holds how many examples and windows were scored.

    Args:
        cfg: the project config.
        gpt: the model shape (`causal=False`), with the tokenizer's real vocabulary size.
        meta: the `llmkit` entry stored in every checkpoint.
    """

    def __init__(self, cfg: Config, gpt: GPTConfig, meta: dict[str, Any]) -> None:
        super().__init__(cfg, meta)
        self.model = SpanModel(gpt)
        self.val_predictions: dict[int, tuple[tuple[int, int], float | None]] = {}
        self.val_counts: dict[str, int] = {"examples": 0, "windows": 0}
        self._candidates: dict[int, tuple[int, tuple[int, int] | None, float]] = {}
        self._val_loss: list[torch.Tensor] = []

    def training_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        start_logits, end_logits = self.model(batch["ids"], batch["mask"])
        return span_loss(start_logits, end_logits, batch["start"], batch["end"], batch["mask"],
                         label_smoothing=self.cfg.training.label_smoothing)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int):
        # train/loss is logged by the TrainLoss callback: no device sync per micro-batch
        return self.training_loss(batch)

    def on_validation_epoch_start(self) -> None:
        self.val_predictions = {}
        self._candidates = {}
        self._val_loss = []

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        # Every window hands over its best span; the threshold is applied per example.
        loss_sum, found = validate_batch(self.model, batch, self.cfg.span.max_span_tokens)
        self._val_loss.append(loss_sum)
        self._candidates.update(found)

    def on_validation_epoch_end(self) -> None:
        loss_sum = torch.stack(self._val_loss).sum() if self._val_loss else torch.zeros(())
        # float(): a CPU-GPU sync, once per validation
        result = score_validation(self._candidates, float(loss_sum),
                                  self.trainer.datamodule.val_examples,
                                  self.cfg.span.nospan_threshold)
        self.val_predictions = result.answers
        self.val_counts = result.counts
        metrics = result.metrics
        # Under DDP every rank scores the whole validation set; sync_dist only averages
        # equal numbers.
        self.log_dict(metrics, sync_dist=self.trainer.world_size > 1)
        self.log("val_loss", metrics["val/loss"], prog_bar=True, logger=False)
        if "val/has_span_iou" in metrics:
            # The console's validation line: IoU on examples that have an answer, which a
            # model answering "no span" everywhere cannot fake.
            self.log("has_iou", metrics["val/has_span_iou"], prog_bar=True, logger=False)
