"""Span metrics: IoU, exact match and no-span precision/recall.

One convention everywhere (DESIGN.md, problem 4): a span is `(start, end)` with an
*exclusive* end, so it covers the positions `start, start + 1, ..., end - 1` and its length
is `end - start` (never `end - start + 1`). A span with `start == end` covers nothing and
means "no span"; `(0, 0)` is the conventional spelling, but every empty span counts the same.

The functions work on plain ints (numpy and 0-d torch integers are accepted through
`operator.index`) and do not care whether the offsets are characters or tokens, as long as
prediction and gold use the same unit.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import asdict, dataclass


def check_span(start: int, end: int, name: str = "a") -> tuple[int, int]:
    """Return `(start, end)` as ints, or raise ValueError when it is not a valid span.

    `name` says which span it is in the message ("gold", "predicted").

    Invalid spans are programming errors (the data layer validates user data), so this
    raises ValueError rather than an LlmkitError.
    """
    try:
        start, end = operator.index(start), operator.index(end)
    except TypeError:
        raise ValueError(
            f"{name} span must hold integer offsets, got ({start!r}, {end!r})"
        ) from None
    if start < 0 or end < start:
        raise ValueError(f"{name} span ({start}, {end}) is invalid: need 0 <= start <= end")
    return start, end


def is_no_span(start: int, end: int) -> bool:
    """True when `[start, end)` covers no position (`start == end`), i.e. means "no span"."""
    start, end = check_span(start, end)
    return start == end


def span_iou(pred_start: int, pred_end: int, gold_start: int, gold_end: int) -> float:
    """Intersection over union of the positions covered by two exclusive spans.

    Two no-spans agree perfectly (1.0); a no-span against a real span scores 0.0.
    Examples: `[2, 5)` vs `[3, 6)` is 0.5, adjacent `[0, 3)` vs `[3, 5)` is 0.0.

    Raises:
        ValueError: a span is negative, has `start > end`, or holds non-integers.
    """
    ps, pe = check_span(pred_start, pred_end, "predicted")
    gs, ge = check_span(gold_start, gold_end, "gold")
    pred_empty, gold_empty = ps == pe, gs == ge
    if pred_empty or gold_empty:
        # The union is empty only when both are no-spans; that is an exact agreement.
        return 1.0 if pred_empty and gold_empty else 0.0
    inter = max(0, min(pe, ge) - max(ps, gs))
    union = (pe - ps) + (ge - gs) - inter
    return inter / union


def exact_match(pred: Sequence[int], gold: Sequence[int]) -> bool:
    """True when `pred` and `gold` (each `(start, end)`) are the same span.

    Any no-span equals any other no-span: `(0, 0)` matches `(4, 4)`.

    Raises:
        ValueError: a span is invalid (see `span_iou`).
    """
    ps, pe = check_span(*pred, "predicted")
    gs, ge = check_span(*gold, "gold")
    if ps == pe or gs == ge:
        return ps == pe and gs == ge
    return (ps, pe) == (gs, ge)


@dataclass(frozen=True)
class SpanScores:
    """Aggregated span metrics over a set of (prediction, gold) pairs.

    A rate whose denominator is zero is `None`, never NaN: NaN breaks JSON and makes
    TensorBoard charts useless, so callers skip logging a `None` (as `to_log_dict` does).
    "has span" rows are those whose *gold* has a span; "no span" rows are those whose gold
    is a no-span. On no-span rows IoU and exact match are both 1 exactly when the
    prediction is a no-span too, so their mean IoU and exact match rate both equal
    `nospan_recall` and have no fields of their own.
    """

    n: int  # number of pairs
    iou: float | None  # mean IoU over all pairs
    exact_match: float | None  # fraction of pairs that match exactly
    has_span_n: int  # pairs whose gold has a span
    has_span_iou: float | None  # mean IoU over those
    has_span_exact_match: float | None  # exact match rate over those
    nospan_n: int  # pairs whose gold is a no-span
    nospan_precision: float | None  # of predicted no-spans, the fraction whose gold is no-span
    nospan_recall: float | None  # of gold no-spans, the fraction predicted as no-span

    def to_dict(self) -> dict[str, int | float | None]:
        """All fields as a plain dict (JSON-ready: `None` becomes `null`)."""
        return asdict(self)

    def to_log_dict(self, prefix: str = "val/") -> dict[str, float]:
        """The TensorBoard scalars of DESIGN.md, leaving out those that are `None`.

        Keys are `{prefix}span_iou`, `{prefix}exact_match`, `{prefix}nospan_precision` and
        `{prefix}nospan_recall`.
        """
        values = {
            "span_iou": self.iou,
            "exact_match": self.exact_match,
            "nospan_precision": self.nospan_precision,
            "nospan_recall": self.nospan_recall,
        }
        return {prefix + k: float(v) for k, v in values.items() if v is not None}


def _ratio(num: float, den: int) -> float | None:
    return num / den if den else None


def score_spans(preds: Sequence[Sequence[int]], golds: Sequence[Sequence[int]]) -> SpanScores:
    """Aggregate IoU, exact match and no-span precision/recall over paired spans.

    Args:
        preds: predicted `(start, end)` spans, exclusive end; `start == end` is "no span".
        golds: gold spans, same convention and the same length as `preds`.

    Returns:
        A `SpanScores`; every rate with an empty denominator (including all of them when
        the input is empty) is `None`.

    Raises:
        ValueError: the lengths differ or a span is invalid.
    """
    if len(preds) != len(golds):
        raise ValueError(f"got {len(preds)} predicted spans but {len(golds)} gold spans")
    iou_sum = em_sum = has_iou = has_em = 0.0
    has_n = nospan_n = pred_nospan = both_nospan = 0
    for pred, gold in zip(preds, golds, strict=True):
        ps, pe = check_span(*pred, "predicted")
        gs, ge = check_span(*gold, "gold")
        iou = span_iou(ps, pe, gs, ge)
        em = float(exact_match((ps, pe), (gs, ge)))
        iou_sum += iou
        em_sum += em
        pred_empty, gold_empty = ps == pe, gs == ge
        pred_nospan += pred_empty
        if gold_empty:
            nospan_n += 1
            both_nospan += pred_empty
        else:
            has_n += 1
            has_iou += iou
            has_em += em
    n = len(golds)
    return SpanScores(
        n=n,
        iou=_ratio(iou_sum, n),
        exact_match=_ratio(em_sum, n),
        has_span_n=has_n,
        has_span_iou=_ratio(has_iou, has_n),
        has_span_exact_match=_ratio(has_em, has_n),
        nospan_n=nospan_n,
        nospan_precision=_ratio(both_nospan, pred_nospan),
        nospan_recall=_ratio(both_nospan, nospan_n),
    )
