"""Model code: the GPT trunk, the causal language model and the span model (no Lightning)."""

from __future__ import annotations

from llmkit.models.gpt import (
    GPT,
    CausalLM,
    GPTConfig,
    TrunkOutput,
    configure_optimizer_groups,
    count_parameters,
    param_counts,
)
from llmkit.models.span import SpanModel, decode_spans, span_loss

__all__ = [
    "GPT",
    "CausalLM",
    "GPTConfig",
    "SpanModel",
    "TrunkOutput",
    "configure_optimizer_groups",
    "count_parameters",
    "decode_spans",
    "param_counts",
    "span_loss",
]
