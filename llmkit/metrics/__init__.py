"""Pure metric functions: span IoU / exact match / no-span precision-recall, LM bits."""

from __future__ import annotations

from llmkit.metrics.highlight import mark_spans, render_span_sample
from llmkit.metrics.lm import bits_per_token, perplexity
from llmkit.metrics.spans import (
    SpanScores,
    check_span,
    exact_match,
    is_no_span,
    score_spans,
    span_iou,
)

__all__ = [
    "SpanScores",
    "bits_per_token",
    "check_span",
    "exact_match",
    "is_no_span",
    "mark_spans",
    "perplexity",
    "render_span_sample",
    "score_spans",
    "span_iou",
]
