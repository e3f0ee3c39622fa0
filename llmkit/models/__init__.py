"""Model code: the GPT trunk, the causal language model and the span model (no Lightning)."""

from __future__ import annotations

from llmkit.models.gpt import (
    GPT,
    CausalLM,
    GPTConfig,
    KVCache,
    TrunkOutput,
    check_sampling,
    configure_optimizer_groups,
    count_parameters,
    param_counts,
    sample_next,
)
from llmkit.models.span import SpanModel, decode_spans, span_loss

__all__ = [
    "GPT",
    "CausalLM",
    "GPTConfig",
    "KVCache",
    "SpanModel",
    "TrunkOutput",
    "check_sampling",
    "configure_optimizer_groups",
    "count_parameters",
    "decode_spans",
    "param_counts",
    "sample_next",
    "span_loss",
]
