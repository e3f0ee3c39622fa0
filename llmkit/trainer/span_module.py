"""The LightningModule of the span-prediction task."""

from __future__ import annotations

from typing import Any

import torch

from llmkit.config import Config
from llmkit.metrics.spans import score_spans
from llmkit.models import GPTConfig, SpanModel, decode_spans, span_loss
from llmkit.tokenizer import token_span_to_char_span
from llmkit.trainer.task import TaskModule


class SpanModule(TaskModule):
    """Trains a `SpanModel` and logs span IoU, exact match and no-span precision/recall.

    Validation predictions are kept (as character spans, converted through each example's
    offsets) in `self.val_predictions`, keyed by the example's index in the validation
    set, so that the highlighted-samples callback can show them.

    Args:
        cfg: the project config.
        gpt: the model shape (`causal=False`), with the tokenizer's real vocabulary size.
        meta: the `llmkit` entry stored in every checkpoint.
    """

    def __init__(self, cfg: Config, gpt: GPTConfig, meta: dict[str, Any]) -> None:
        super().__init__(cfg, meta)
        self.model = SpanModel(gpt)
        self.val_predictions: dict[int, tuple[tuple[int, int], float]] = {}
        self._val_loss: list[torch.Tensor] = []

    def training_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        start_logits, end_logits = self.model(batch["ids"], batch["mask"])
        return span_loss(start_logits, end_logits, batch["start"], batch["end"], batch["mask"],
                         label_smoothing=self.cfg.training.label_smoothing)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int):
        loss = self.training_loss(batch)
        self.log("train/loss", loss, on_step=True, prog_bar=True, batch_size=batch["ids"].size(0))
        return loss

    def on_validation_epoch_start(self) -> None:
        self.val_predictions = {}
        self._val_loss = []

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        start_logits, end_logits = self.model(batch["ids"], batch["mask"])
        loss = span_loss(start_logits, end_logits, batch["start"], batch["end"], batch["mask"])
        self._val_loss.append(loss.detach() * batch["ids"].size(0))
        starts, ends, scores = decode_spans(start_logits, end_logits, batch["mask"],
                                            self.cfg.span.max_span_tokens,
                                            self.cfg.span.nospan_threshold)
        examples = self.trainer.datamodule.val_examples
        for i, s, e, score in zip(batch["index"].tolist(), starts.tolist(), ends.tolist(),
                                  scores.tolist(), strict=True):
            offsets = examples[i]["offsets"]
            char = token_span_to_char_span(offsets, s, e) if e > s else (0, 0)
            self.val_predictions[i] = (char, float(score))

    def on_validation_epoch_end(self) -> None:
        examples = self.trainer.datamodule.val_examples
        indices = sorted(self.val_predictions)
        preds = [self.val_predictions[i][0] for i in indices]
        golds = [tuple(examples[i]["char_span"] or (0, 0)) for i in indices]
        n = len(indices)
        loss_sum = torch.stack(self._val_loss).sum() if self._val_loss else torch.zeros(())
        loss = float(loss_sum) / max(1, n)
        scores = score_spans(preds, golds)
        metrics = {"val/loss": loss, **scores.to_log_dict("val/")}
        # Span metrics are computed on this process's share; under DDP each rank sees a
        # disjoint part of the validation set, so the logged value is averaged across ranks.
        self.log_dict(metrics, sync_dist=self.trainer.world_size > 1)
        self.log("val_loss", loss, prog_bar=True, logger=False)
        if "val/span_iou" in metrics:
            self.log("iou", metrics["val/span_iou"], prog_bar=True, logger=False)
