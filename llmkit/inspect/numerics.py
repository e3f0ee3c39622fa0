"""The numbers inspection tools report, computed one way: float32, bits, NaN never hidden.

Every quantity starts from `log_softmax` in float32 (bf16 logits would lose the small
probabilities that KL and entropy live on). Zero probabilities are handled where they
are exactly zero (log-probability `-inf`, from a `-inf` logit), never with
`where(p > 0)` or `nan_to_num`: those turn NaN logits into 0 bits, a model that looks
perfectly confident when it is broken. A NaN stays a NaN here, and `finite_or_none` turns
it into `None` plus an entry in the report's `nonfinite` list when it leaves torch.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.nn import functional as F

LN2 = math.log(2.0)


def log_probs(logits: torch.Tensor) -> torch.Tensor:
    """Natural-log probabilities (..., V) in float32, from logits of any float dtype."""
    return F.log_softmax(logits.float(), dim=-1)


def _p_logp(logp: torch.Tensor, logq: torch.Tensor) -> torch.Tensor:
    """p * log q elementwise, with the 0 * -inf of an exactly-zero p counted as 0.

    Only where p's own log-probability is exactly -inf (p == 0 exactly) is the term set to
    zero; a NaN anywhere stays NaN.
    """
    term = logp.exp() * logq
    return term.masked_fill(logp == float("-inf"), 0.0)


def entropy_bits(logp: torch.Tensor) -> torch.Tensor:
    """Entropy in bits over the last dimension of natural-log probabilities (..., V)."""
    return -_p_logp(logp, logp).sum(dim=-1) / LN2


def kl_bits(logp: torch.Tensor, logq: torch.Tensor) -> torch.Tensor:
    """KL(p || q) in bits over the last dimension; both are natural-log probabilities.

    The lens uses p = the model's own (final) distribution and q = a layer's lens
    distribution: how many bits the layer's guess loses against what the model finally
    says. Identical inputs give exactly 0.
    """
    return (_p_logp(logp, logp) - _p_logp(logp, logq)).sum(dim=-1) / LN2


def token_rank(logits: torch.Tensor, token: torch.Tensor) -> torch.Tensor:
    """Rank of `token` (...,) among logits (..., V): 0 when it is the top choice.

    The rank counts the tokens with a strictly higher logit (ties favour the target). It is
    returned as float32 so that a row with a NaN gives NaN (no rank), not a made-up number.
    """
    logits = logits.float()
    own = logits.gather(-1, token.long().unsqueeze(-1))  # (..., 1)
    rank = (logits > own).sum(dim=-1).float()  # NaN compares False: counted below instead
    broken = torch.isnan(logits).any(dim=-1)
    return rank.masked_fill(broken, float("nan"))


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine similarity over the last dimension, in float32 (NaN for a zero vector)."""
    a, b = a.float(), b.float()
    dot = (a * b).sum(dim=-1)
    return dot / (torch.linalg.vector_norm(a, dim=-1) * torch.linalg.vector_norm(b, dim=-1))


def l2(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Euclidean distance over the last dimension, in float32."""
    return torch.linalg.vector_norm(a.float() - b.float(), dim=-1)


def norm(a: torch.Tensor) -> torch.Tensor:
    """Euclidean norm over the last dimension, in float32.

    A float16 residual of 4096 values around 100 has a sum of squares of about 4e7, far
    past float16's largest number (65504): the norm must be taken after the cast.
    """
    return torch.linalg.vector_norm(a.float(), dim=-1)


def attention_entropy(att: torch.Tensor, first_query: int = 0) -> torch.Tensor:
    """Entropy of causal attention rows, normalised by what each row may attend to.

    `att` is (..., Tq, K): the weights of queries at positions first_query ..
    first_query + Tq - 1 over keys 0 .. K - 1. A causal query at position t may attend to
    t + 1 keys, not K, so its entropy is divided by log(t + 1): a query that spreads its
    weight evenly over everything it may see scores 1.0 on every row, and 0.0 means all
    weight on one key. A row with a single key to choose from has no spread to measure
    (0 / 0): it is NaN, which reports turn into null. Float32 throughout.
    """
    att = att.float()
    Tq = att.size(-2)
    allowed = torch.arange(first_query + 1, first_query + Tq + 1, device=att.device)  # (Tq,)
    logp = att.log()  # exact zeros (masked keys) give -inf, counted as 0 by _p_logp
    ent = -_p_logp(logp, logp).sum(dim=-1)  # (..., Tq), nats
    return ent / allowed.float().log()


class NonFinite:
    """Where NaN and Inf were met on the way out of torch: the report's `nonfinite` list.

    One per report. `finite_or_none` appends an entry for each value that is not finite,
    naming the place (e.g. `runs[0].layers[3].entropy_bits`) and what the value was.
    """

    def __init__(self) -> None:
        self.entries: list[dict[str, str]] = []

    def __len__(self) -> int:
        return len(self.entries)

    def record(self, where: str, value: float) -> None:
        kind = "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
        self.entries.append({"where": where, "value": kind})


def finite_or_none(value: torch.Tensor | float | int, where: str,
                   nonfinite: NonFinite) -> Any:
    """The one way a float leaves torch: finite -> float, anything else -> None, recorded.

    A scalar (Python number or 0-d tensor) gives a float or None. A tensor gives nested
    lists of the same shape; the place of each bad element is `where[i][j]...`. Integers
    stay integers. Reports call this for every number they hold, so no NaN can reach a
    JSON file as 0 or as the non-standard `NaN` token.
    """
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().tolist()  # one device-to-host copy per tensor
    return _clean(value, where, nonfinite)


def _clean(value: Any, where: str, nonfinite: NonFinite) -> Any:
    if isinstance(value, list):
        return [_clean(v, f"{where}[{i}]", nonfinite) for i, v in enumerate(value)]
    if isinstance(value, bool) or isinstance(value, int):
        return value
    value = float(value)
    if math.isfinite(value):
        return value
    nonfinite.record(where, value)
    return None
