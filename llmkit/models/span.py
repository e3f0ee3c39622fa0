"""Span prediction: a bidirectional GPT trunk with start/end logits, its loss and decoder.

Conventions (DESIGN.md): the model sees `[BOS] tokens [EOS]`; a token span `(i, j)` is
exclusive at the end; "no span" is `(0, 0)`, pointing at BOS, so position 0 carries the
no-span score. Padding positions never take part: their logits are the dtype's lowest
value, the loss gives them zero target mass, and the decoder never picks them.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.nn import functional as F

from llmkit.models.gpt import GPT, GPTConfig, init_weights


class SpanModel(nn.Module):
    """A bidirectional GPT trunk with a head giving start and end logits per position."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        if cfg.causal:
            # Under causal attention the start of a span could not see the words after it.
            raise ValueError("SpanModel needs a bidirectional trunk: use GPTConfig(causal=False)")
        self.config = cfg
        self.transformer = GPT(cfg)
        self.span_head = nn.Linear(cfg.n_embd, 2, bias=cfg.bias)
        init_weights(self.span_head)

    def forward(
        self, ids: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Start and end logits, each (B, T), for token ids (B, T) and a bool mask (B, T).

        `mask` is True at real tokens (BOS and EOS included). Padding positions get
        `torch.finfo(dtype).min`: the lowest finite value of the logits' own dtype, so
        softmax gives them zero probability in float32 and bf16 alike without producing
        inf. With `mask=None` every position is real.
        """
        x = self.transformer(ids, mask)  # (B, T, C)
        logits = self.span_head(x)  # (B, T, 2)
        start_logits, end_logits = logits.unbind(dim=-1)  # (B, T) each
        if mask is not None:
            lowest = torch.finfo(logits.dtype).min
            start_logits = start_logits.masked_fill(~mask, lowest)
            end_logits = end_logits.masked_fill(~mask, lowest)
        return start_logits, end_logits


def span_loss(
    start_logits: torch.Tensor,
    end_logits: torch.Tensor,
    start: torch.Tensor,
    end: torch.Tensor,
    mask: torch.Tensor,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Mean of the start and end cross-entropies, with smoothing over real positions only.

    Args:
        start_logits, end_logits: (B, T) logits, padding at `finfo.min` (as `SpanModel` gives).
        start, end: (B,) the gold token span as the data gives it: EXCLUSIVE end, `(0, 0)`
            for no span. The start head must point at `start`, the end head at the span's
            last token `end - 1` (at BOS, 0, for no span), the positions `decode_spans`
            reads back. Gold positions must be real tokens.
        mask: (B, T) bool, True at real tokens.
        label_smoothing: eps; the target is (1 - eps) on the gold position plus eps spread
            evenly over the example's real positions. Padding gets exactly zero mass, so
            adding padding to a batch never changes the loss.

    Returns:
        A scalar float32 loss, averaged over the batch.
    """
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    # The one place an exclusive end becomes the end head's position: the last token
    # of the span, or BOS for no span ((0, 0) -> 0, not -1).
    end_pos = (end - 1).clamp(min=0)
    start_loss = _smoothed_cross_entropy(start_logits, start, mask, label_smoothing)
    end_loss = _smoothed_cross_entropy(end_logits, end_pos, mask, label_smoothing)
    return (start_loss + end_loss) / 2


def _smoothed_cross_entropy(
    logits: torch.Tensor, gold: torch.Tensor, mask: torch.Tensor, eps: float
) -> torch.Tensor:
    """Cross-entropy of (B, T) logits against gold (B,) with smoothing over real positions."""
    # float32 so that bf16 logits neither lose the loss's precision nor overflow
    logp = F.log_softmax(logits.float(), dim=-1)  # (B, T)
    # Padding's log-probability can be -inf (finfo.min minus the normaliser); its target
    # mass is 0 and 0 * -inf is nan, so zero it out instead of multiplying.
    logp = logp.masked_fill(~mask, 0.0)
    gold_logp = logp.gather(1, gold[:, None].long())[:, 0]  # (B,)
    nll = -gold_logp
    if eps > 0.0:
        n_real = mask.sum(dim=1).clamp(min=1)  # (B,)
        smooth = -logp.sum(dim=1) / n_real  # (B,): mean over real positions
        nll = (1.0 - eps) * nll + eps * smooth
    return nll.mean()


def decode_spans(
    start_logits: torch.Tensor,
    end_logits: torch.Tensor,
    mask: torch.Tensor,
    max_span_tokens: int,
    nospan_threshold: float = 0.0,
    context: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pick the best token span of each example (or window), or "no span".

    A candidate span covers positions i..j (inclusive) with i <= j < i + max_span_tokens,
    where every position from i to j is allowed: a context position when `context` is
    given, else a real token other than BOS (position 0) and EOS (the last real position).
    So a span never starts in a question prefix or crosses its separator. Its score is
    `start_logits[i] + end_logits[j]`; the no-span score is `start_logits[0] +
    end_logits[0]`. Their difference is a log-odds margin (softmax normalisers cancel), so
    margins of different windows of one text compare on one scale.

    Args:
        start_logits, end_logits: (B, T) logits.
        mask: (B, T) bool, True at real tokens (BOS and EOS included).
        max_span_tokens: the longest span, in tokens, that may be predicted.
        nospan_threshold: predict a span only when it beats no-span by more than this.
        context: optional (B, T) bool, True at the positions a span may cover (the
            context tokens of a `[BOS] question [EOS] context [EOS]` window); it must be
            one contiguous run per row (the band below checks only both ends).

    Returns:
        `(starts, ends, scores)`, each (B,): the token span `(starts, ends)` with an
        EXCLUSIVE end (`(i, j + 1)`), or `(0, 0)` for no span; `scores` is the best span's
        score minus the no-span score (float32), -inf when an example has no candidate.
    """
    if max_span_tokens < 1:
        raise ValueError(f"max_span_tokens must be >= 1, got {max_span_tokens}")
    B, T = start_logits.shape
    start = start_logits.float()
    end = end_logits.float()

    # Positions a span may touch: real, not BOS, not the last real position (EOS).
    pos = torch.arange(T, device=mask.device)  # (T,)
    last = torch.where(mask, pos, -1).max(dim=1).values  # (B,)
    valid = mask & (pos > 0) & (pos != last[:, None])  # (B, T)
    if context is not None:
        valid = valid & context

    # Look only at the band j = i + k, k < L, instead of the full (T, T) matrix:
    # window[b, i, k] holds the value at position i + k (padding past the end).
    L = min(max_span_tokens, T)
    end_win = F.pad(end, (0, L - 1), value=float("-inf")).unfold(1, L, 1)  # (B, T, L)
    valid_win = F.pad(valid.float(), (0, L - 1)).unfold(1, L, 1) > 0  # (B, T, L)
    allowed = valid[:, :, None] & valid_win  # (B, T, L)
    scores = (start[:, :, None] + end_win).masked_fill(~allowed, float("-inf"))  # (B, T, L)

    best, flat = scores.view(B, T * L).max(dim=1)  # (B,)
    i = flat // L
    j = i + flat % L
    score = best - (start[:, 0] + end[:, 0])  # (B,)
    take = score > nospan_threshold  # False for -inf (no candidate)
    zero = torch.zeros_like(i)
    starts = torch.where(take, i, zero)
    ends = torch.where(take, j + 1, zero)
    return starts, ends, score
