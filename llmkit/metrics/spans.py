"""Span metrics: IoU, exact match, token F1 over answer text and no-span precision/recall.

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
import re
import string
from collections import Counter
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


_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(text: str) -> str:
    """An answer text as extractive-QA evaluation compares it (the SQuAD convention).

    Lower case, ASCII punctuation removed, the articles "a", "an" and "the" removed,
    runs of whitespace made single spaces: "The  Cat!" and "cat" are the same answer.
    """
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def token_f1(pred: str | None, gold: str | None) -> float:
    """Token F1 between a predicted and a gold answer text (None: "no span").

    Both are normalised (`normalize_answer`) and split on whitespace; F1 is the harmonic
    mean of the precision and recall of their shared tokens (a bag: repeated words count
    as often as both sides have them). As in SQuAD 2.0, a no-span scores 1 against a
    no-span and 0 against an answer; an answer that normalises to nothing ("the") counts
    as an empty token list and matches only another such answer.
    """
    if pred is None or gold is None:
        return float(pred is None and gold is None)
    p, g = normalize_answer(pred).split(), normalize_answer(gold).split()
    if not p or not g:
        return float(p == g)
    common = sum((Counter(p) & Counter(g)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(p), common / len(g)
    return 2 * precision * recall / (precision + recall)


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
    nospan_predicted: float | None  # share of all predictions that are no-span
    f1: float | None = None  # mean token F1 over answer texts (None: texts not given)

    def to_dict(self) -> dict[str, int | float | None]:
        """All fields as a plain dict (JSON-ready: `None` becomes `null`)."""
        return asdict(self)

    def to_log_dict(self, prefix: str = "val/") -> dict[str, float]:
        """The TensorBoard scalars of DESIGN.md, leaving out those that are `None`.

        Keys are `{prefix}span_iou`, `{prefix}exact_match`, `{prefix}has_span_iou`,
        `{prefix}has_span_exact_match`, `{prefix}span_f1`, `{prefix}nospan_precision`,
        `{prefix}nospan_recall` and `{prefix}nospan_predicted`. The has-span ones are
        what shows a model that never answers: it scores 0 there, whatever share of
        no-span examples props up the overall IoU.
        """
        values = {
            "span_iou": self.iou,
            "exact_match": self.exact_match,
            "has_span_iou": self.has_span_iou,
            "has_span_exact_match": self.has_span_exact_match,
            "span_f1": self.f1,
            "nospan_precision": self.nospan_precision,
            "nospan_recall": self.nospan_recall,
            "nospan_predicted": self.nospan_predicted,
        }
        return {prefix + k: float(v) for k, v in values.items() if v is not None}


def _ratio(num: float, den: int) -> float | None:
    return num / den if den else None


def score_spans(preds: Sequence[Sequence[int]], golds: Sequence[Sequence[int]],
                texts: Sequence[str] | None = None) -> SpanScores:
    """Aggregate IoU, exact match, token F1 and no-span precision/recall over paired spans.

    Args:
        preds: predicted `(start, end)` spans, exclusive end; `start == end` is "no span".
        golds: gold spans, same convention and the same length as `preds`.
        texts: the text each pair's CHARACTER spans point into; when given, `f1` is the
            mean `token_f1` of the answer texts `text[start:end]`.

    Returns:
        A `SpanScores`; every rate with an empty denominator (including all of them when
        the input is empty) is `None`.

    Raises:
        ValueError: the lengths differ or a span is invalid.
    """
    if len(preds) != len(golds):
        raise ValueError(f"got {len(preds)} predicted spans but {len(golds)} gold spans")
    if texts is not None and len(texts) != len(golds):
        raise ValueError(f"got {len(texts)} texts for {len(golds)} span pairs")
    iou_sum = em_sum = has_iou = has_em = f1_sum = 0.0
    has_n = nospan_n = pred_nospan = both_nospan = 0
    for k, (pred, gold) in enumerate(zip(preds, golds, strict=True)):
        ps, pe = check_span(*pred, "predicted")
        gs, ge = check_span(*gold, "gold")
        if texts is not None:
            text = texts[k]
            f1_sum += token_f1(text[ps:pe] if pe > ps else None,
                               text[gs:ge] if ge > gs else None)
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
        nospan_predicted=_ratio(pred_nospan, n),
        f1=_ratio(f1_sum, n) if texts is not None else None,
    )
