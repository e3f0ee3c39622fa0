"""Spans of whole examples from a `SpanModel`: windows in, one answer per example out.

The one decoding path of llmkit: validation (`trainer/span_module.py`) and `llmkit
predict` (`commands/predict.py`) both turn a batch of windows into per-window candidates
with `window_spans`, and candidates into answers with `llmkit.data.windows.best_spans`.
So a span is chosen the same way wherever it is shown. No Lightning in here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from llmkit.data.spans import SpanExample, collate_spans
from llmkit.data.windows import SpanAnswer, Window, best_spans, window_candidates
from llmkit.metrics.spans import score_spans
from llmkit.models import SpanModel, decode_spans, span_loss

Candidate = tuple[int, tuple[int, int] | None, float]  # (example, char span, margin)


def window_spans(start_logits: torch.Tensor, end_logits: torch.Tensor,
                 batch: dict[str, Any], windows: Sequence[Window],
                 max_span_tokens: int) -> list[Candidate]:
    """Each window's best span inside its context, as a character span, with its margin.

    Every window hands over its best span whatever its margin (the threshold is applied
    once per example, by `best_spans`, on the best margin of all its windows).

    Args:
        start_logits, end_logits: the model's (B, T) output for `batch`.
        batch: `collate_spans` of `windows` (its `mask` and `context` are used).
        windows: the batch's windows, in row order.
    """
    mask = batch["mask"].to(start_logits.device)
    context = batch["context"].to(start_logits.device)
    starts, ends, margins = decode_spans(start_logits, end_logits, mask, max_span_tokens,
                                         -math.inf, context=context)
    # .tolist() is a device-to-host sync, once per batch
    return window_candidates(windows, starts.tolist(), ends.tolist(), margins.tolist())


@torch.no_grad()
def predict_examples(model: SpanModel, examples: Sequence[SpanExample], *, block_size: int,
                     stride: int | None, max_span_tokens: int, nospan_threshold: float,
                     batch_size: int = 32) -> list[SpanAnswer]:
    """The answer of each example: the best span over all its windows, or no span.

    Windows of all examples go through the model `batch_size` at a time; padding is
    masked, so a window's answer does not depend on its batch-mates (batched and
    one-at-a-time predictions agree).

    Raises:
        ValueError: `batch_size` < 1.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    windows = [w for i, ex in enumerate(examples) for w in ex.windows(i, block_size, stride)]
    candidates: list[Candidate] = []
    device = next(model.parameters()).device
    for lo in range(0, len(windows), batch_size):
        part = windows[lo:lo + batch_size]
        batch = collate_spans(list(enumerate(part)))
        start_logits, end_logits = model(batch["ids"].to(device), batch["mask"].to(device))
        candidates += window_spans(start_logits, end_logits, batch, part, max_span_tokens)
    return best_spans(candidates, len(examples), nospan_threshold)


def validate_batch(model: SpanModel, batch: dict[str, Any], max_span_tokens: int
                   ) -> tuple[torch.Tensor, list[tuple[int, Candidate]]]:
    """One validation batch (`collate_val_spans`, on the model's device): the span loss
    summed over its windows (a tensor: no device sync), and each window's candidate keyed
    by its index in the validation set. `SpanModule` and `llmkit eval` both call it."""
    start_logits, end_logits = model(batch["ids"], batch["mask"])
    loss = span_loss(start_logits, end_logits, batch["start"], batch["end"], batch["mask"])
    rows = batch["windows"]  # the batch's windows and their dataset indices
    found = window_spans(start_logits, end_logits, batch, rows.windows, max_span_tokens)
    return loss.detach() * batch["ids"].size(0), list(zip(rows.indices, found, strict=True))


@dataclass
class SpanValidation:
    """What one span validation found: the logged metrics, each example's answer, counts."""

    metrics: dict[str, float]  # val/loss and the `score_spans` tags
    answers: dict[int, tuple[tuple[int, int], float | None]]  # example -> (char span, score)
    counts: dict[str, int]  # {"examples": ..., "windows": ...} scored


def score_validation(candidates: dict[int, Candidate], loss_sum: float,
                     examples: Sequence[SpanExample], nospan_threshold: float
                     ) -> SpanValidation:
    """Per-example answers from per-window candidates, scored against the gold spans.

    The one ending of a span validation: `SpanModule` (during training) and `llmkit eval`
    both call it, so the two report the same numbers for the same weights.

    Args:
        candidates: window index -> `window_spans` candidate, for every window scored.
        loss_sum: the span loss summed over those windows.
        examples: the validation examples (`candidates` point into them).
    """
    windows = [candidates[i] for i in sorted(candidates)]
    seen = sorted({example for example, _, _ in windows})
    renumber = {example: k for k, example in enumerate(seen)}
    found = best_spans([(renumber[e], span, m) for e, span, m in windows], len(seen),
                       nospan_threshold)
    answers = {example: (a.span or (0, 0), a.score) for example, a in zip(seen, found,
                                                                          strict=True)}
    preds = [answers[i][0] for i in seen]
    golds = [tuple(examples[i].char_span or (0, 0)) for i in seen]
    texts = [examples[i].text for i in seen]
    scores = score_spans(preds, golds, texts)
    metrics = {"val/loss": loss_sum / max(1, len(windows)), **scores.to_log_dict("val/")}
    return SpanValidation(metrics, answers, {"examples": len(seen), "windows": len(windows)})
