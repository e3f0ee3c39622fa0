"""Span IoU, exact match and their aggregation, checked against a brute-force reference."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from llmkit.metrics.spans import (
    SpanScores,
    exact_match,
    is_no_span,
    normalize_answer,
    score_spans,
    span_iou,
    token_f1,
)


def reference_iou(ps: int, pe: int, gs: int, ge: int) -> float:
    """IoU by counting covered positions one by one; no length formulas to get wrong."""
    pred, gold = set(range(ps, pe)), set(range(gs, ge))
    union = pred | gold
    if not union:
        return 1.0  # two no-spans agree
    return len(pred & gold) / len(union)


@st.composite
def spans(draw: st.DrawFn, max_end: int = 30) -> tuple[int, int]:
    start = draw(st.integers(0, max_end))
    end = draw(st.integers(start, max_end))
    return start, end


# --- span_iou: textbook cases -------------------------------------------------------------


@pytest.mark.parametrize(
    ("pred", "gold", "expected"),
    [
        ((2, 5), (3, 6), 0.5),  # 2 shared of 4 covered
        ((2, 5), (2, 5), 1.0),
        ((0, 3), (3, 5), 0.0),  # adjacent: exclusive end shares nothing
        ((0, 10), (2, 4), 0.2),  # containment
        ((4, 5), (4, 5), 1.0),  # single position
        ((0, 0), (0, 0), 1.0),
        ((0, 0), (7, 7), 1.0),  # any two no-spans agree
        ((0, 0), (0, 1), 0.0),  # no-span vs the first position
        ((0, 1), (0, 0), 0.0),
        ((3, 3), (2, 5), 0.0),  # an empty span inside a real one is still "no span"
    ],
)
def test_span_iou_textbook(pred, gold, expected):
    assert span_iou(*pred, *gold) == pytest.approx(expected)


def test_span_iou_accepts_numpy_ints():
    assert span_iou(np.int64(2), np.int64(5), 3, 6) == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((5, 2, 0, 1), r"predicted span \(5, 2\) is invalid"),
        ((-1, 2, 0, 1), r"predicted span \(-1, 2\) is invalid"),
        ((0, 1, 3, 1), r"gold span \(3, 1\) is invalid"),
        ((0, 1.5, 0, 1), r"predicted span must hold integer offsets"),
    ],
)
def test_span_iou_rejects_invalid_spans(args, message):
    with pytest.raises(ValueError, match=message):
        span_iou(*args)


# --- span_iou: properties -----------------------------------------------------------------


@given(spans(), spans())
def test_span_iou_matches_brute_force(pred, gold):
    assert span_iou(*pred, *gold) == pytest.approx(reference_iou(*pred, *gold))


@given(spans(), spans())
def test_span_iou_is_symmetric_and_bounded(a, b):
    iou = span_iou(*a, *b)
    assert iou == span_iou(*b, *a)
    assert 0.0 <= iou <= 1.0


@given(spans(), spans())
def test_span_iou_is_one_exactly_for_equal_spans(a, b):
    same = a == b or (a[0] == a[1] and b[0] == b[1])
    assert (span_iou(*a, *b) == 1.0) == same
    assert exact_match(a, b) == same


# --- exact_match --------------------------------------------------------------------------


def test_exact_match():
    assert exact_match((2, 5), (2, 5))
    assert exact_match([2, 5], (2, 5))  # spans read from JSON are lists
    assert not exact_match((2, 5), (2, 6))
    assert not exact_match((2, 5), (3, 5))
    assert exact_match((0, 0), (4, 4))
    assert not exact_match((0, 0), (0, 1))
    with pytest.raises(ValueError, match=r"gold span \(4, 3\) is invalid"):
        exact_match((0, 0), (4, 3))


def test_is_no_span():
    assert is_no_span(0, 0)
    assert is_no_span(4, 4)
    assert not is_no_span(0, 1)
    with pytest.raises(ValueError, match=r"span \(2, 1\) is invalid"):
        is_no_span(2, 1)


# --- score_spans --------------------------------------------------------------------------


def test_score_spans_hand_computed():
    preds = [(2, 5), (0, 3), (0, 0), (0, 0), (1, 2)]
    golds = [(3, 6), (0, 3), (4, 9), (0, 0), (0, 0)]
    # ious:  0.5     1.0     0.0     1.0     0.0
    scores = score_spans(preds, golds)
    assert scores == SpanScores(
        n=5,
        iou=pytest.approx(2.5 / 5),
        exact_match=pytest.approx(2 / 5),
        has_span_n=3,
        has_span_iou=pytest.approx(1.5 / 3),
        has_span_exact_match=pytest.approx(1 / 3),
        nospan_n=2,
        nospan_precision=pytest.approx(1 / 2),  # predicted no-span twice, right once
        nospan_recall=pytest.approx(1 / 2),  # gold no-span twice, found once
        nospan_predicted=pytest.approx(2 / 5),
    )
    assert scores.to_log_dict() == {
        "val/span_iou": pytest.approx(0.5),
        "val/exact_match": pytest.approx(0.4),
        "val/has_span_iou": pytest.approx(0.5),
        "val/has_span_exact_match": pytest.approx(1 / 3),
        "val/nospan_precision": pytest.approx(0.5),
        "val/nospan_recall": pytest.approx(0.5),
        "val/nospan_predicted": pytest.approx(0.4),
    }


def test_score_spans_precision_and_recall_differ():
    # Three predicted no-spans, two of them right; two gold no-spans, both found.
    preds = [(0, 0), (0, 0), (0, 0), (1, 4)]
    golds = [(0, 0), (0, 0), (2, 3), (1, 4)]
    scores = score_spans(preds, golds)
    assert scores.nospan_precision == pytest.approx(2 / 3)
    assert scores.nospan_recall == pytest.approx(1.0)
    assert scores.has_span_n == 2
    assert scores.has_span_exact_match == pytest.approx(0.5)


def test_score_spans_empty_denominators_are_none():
    # No gold no-spans and no predicted no-spans: precision and recall are undefined.
    scores = score_spans([(1, 3)], [(1, 2)])
    assert scores.nospan_n == 0
    assert scores.nospan_precision is None
    assert scores.nospan_recall is None
    assert scores.to_log_dict(prefix="") == {"span_iou": 0.5, "exact_match": 0.0,
                                             "has_span_iou": 0.5, "has_span_exact_match": 0.0,
                                             "nospan_predicted": 0.0}
    assert scores.to_dict()["nospan_precision"] is None

    empty = score_spans([], [])
    assert empty.n == 0
    assert empty.iou is None and empty.has_span_iou is None
    assert empty.to_log_dict() == {}


def test_score_spans_only_no_spans():
    scores = score_spans([(0, 0), (5, 5)], [(0, 0), (0, 0)])
    assert scores.iou == 1.0
    assert scores.exact_match == 1.0
    assert scores.has_span_n == 0 and scores.has_span_iou is None
    assert scores.nospan_precision == 1.0 and scores.nospan_recall == 1.0


def test_score_spans_rejects_length_mismatch():
    with pytest.raises(ValueError, match="got 2 predicted spans but 1 gold spans"):
        score_spans([(0, 0), (1, 2)], [(0, 0)])


@given(st.lists(st.tuples(spans(), spans()), max_size=20))
def test_score_spans_mean_iou_matches_reference(pairs):
    preds = [p for p, _ in pairs]
    golds = [g for _, g in pairs]
    scores = score_spans(preds, golds)
    assert scores.n == scores.has_span_n + scores.nospan_n == len(pairs)
    if pairs:
        expected = sum(reference_iou(*p, *g) for p, g in pairs) / len(pairs)
        assert scores.iou == pytest.approx(expected)
    else:
        assert scores.iou is None


def test_a_model_that_never_answers_scores_zero_on_has_span_metrics():
    # Half the gold spans are no-spans: the overall IoU is 0.5 for a model that has
    # learned nothing but "no span"; the has-span metrics and the no-span share show it.
    golds = [(0, 0), (2, 5), (0, 0), (1, 3)]
    preds = [(0, 0)] * 4
    texts = ["a", "the big cat", "b", "dogs"]
    logged = score_spans(preds, golds, texts).to_log_dict()
    assert logged["val/span_iou"] == 0.5
    assert logged["val/has_span_iou"] == 0.0
    assert logged["val/has_span_exact_match"] == 0.0
    assert logged["val/nospan_predicted"] == 1.0
    assert logged["val/span_f1"] == 0.5  # 1 on the two no-span golds, 0 on the others


@pytest.mark.parametrize("raw, normal", [
    ("The Cat!", "cat"),
    ("  an  apple,  a   day ", "apple day"),
    ("theory of the atom", "theory of atom"),  # only whole-word articles go
    ("Rock'n'Roll", "rocknroll"),
    ("", ""),
])
def test_normalize_answer_follows_the_squad_convention(raw, normal):
    assert normalize_answer(raw) == normal


@pytest.mark.parametrize("pred, gold, f1", [
    ("the cat sat", "a cat sat", 1.0),  # the same after normalisation
    ("cat", "the black cat", 2 * (1 * 0.5) / 1.5),  # precision 1, recall 1/2
    ("big big dog", "big dog", 2 * (2 / 3 * 1) / (2 / 3 + 1)),  # a bag: "big" counts once
    ("dog", "cat", 0.0),
    (None, None, 1.0),
    (None, "cat", 0.0),
    ("cat", None, 0.0),
    ("the", "a", 1.0),  # both normalise to nothing
])
def test_token_f1_hand_computed(pred, gold, f1):
    assert token_f1(pred, gold) == pytest.approx(f1)


def test_score_spans_f1_reads_the_answer_texts():
    texts = ["the quick brown fox", "no answer here"]
    preds = [(4, 15), (0, 0)]  # "quick brown" vs gold "brown fox"; a right no-span
    golds = [(10, 19), (0, 0)]
    scores = score_spans(preds, golds, texts)
    assert scores.f1 == pytest.approx((0.5 + 1.0) / 2)
    assert score_spans(preds, golds).f1 is None  # no texts, no F1
    with pytest.raises(ValueError, match="got 1 texts for 2 span pairs"):
        score_spans(preds, golds, texts[:1])
