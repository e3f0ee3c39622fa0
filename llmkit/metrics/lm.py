"""Language-model metrics derived from cross-entropy measured in nats.

PyTorch's `cross_entropy` uses the natural log, so its loss is in nats; dividing by
`ln 2` turns nats into bits. A NaN loss (a diverged run) passes through as NaN so that the
caller sees it rather than a crash in the logging path.
"""

from __future__ import annotations

import math

_LN2 = math.log(2.0)


def _as_nats(value: float, name: str) -> float:
    """`value` as a float, refusing negatives (cross-entropy is never below zero)."""
    value = float(value)  # also accepts numpy scalars and 0-d tensors
    if value < 0:
        raise ValueError(f"{name} must be >= 0 nats, got {value}")
    return value


def validation_metrics(mean_ce_nats: float) -> dict[str, float]:
    """`val/loss`, `val/ppl` and `val/bits_per_token` of a mean validation cross-entropy:
    what training logs and `llmkit eval` prints."""
    return {"val/loss": mean_ce_nats, "val/ppl": perplexity(mean_ce_nats),
            "val/bits_per_token": bits_per_token(mean_ce_nats)}


def bits_per_token(mean_ce_nats: float) -> float:
    """Mean cross-entropy per token in bits: `mean_ce_nats / ln 2`.

    Example: a loss of `ln 2` nats is 1 bit per token.

    Raises:
        ValueError: `mean_ce_nats` is negative.
    """
    return _as_nats(mean_ce_nats, "mean cross-entropy") / _LN2


def perplexity(mean_ce_nats: float) -> float:
    """Perplexity `exp(mean_ce_nats)`; `inf` where the exponential overflows a float.

    A freshly initialised model can have a loss large enough (about 710 nats) for `exp` to
    overflow; logging `inf` is more useful there than an OverflowError.

    Raises:
        ValueError: `mean_ce_nats` is negative.
    """
    ce = _as_nats(mean_ce_nats, "mean cross-entropy")
    try:
        return math.exp(ce)
    except OverflowError:
        return math.inf
