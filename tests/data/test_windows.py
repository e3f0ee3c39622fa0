"""Windows of long span texts: where they start, what each holds, its training target, and
one answer per example from all its windows."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llmkit.data.windows import (
    NO_SPAN,
    best_spans,
    context_room,
    cut_windows,
    default_stride,
    window_char_span,
    window_starts,
    window_target,
)
from llmkit.tokenizer import BOS_ID, EOS_ID


def test_room_leaves_place_for_bos_separator_and_eos():
    assert context_room(32, 0) == 30  # [BOS] context [EOS]
    assert context_room(32, 5) == 24  # [BOS] 5 prefix [EOS] context [EOS]
    assert context_room(8, 5) == 0
    assert default_stride(30) == 15 and default_stride(1) == 1


def test_window_starts_hand_computed():
    assert window_starts(10, 30, 15) == [0]  # fits: one window
    assert window_starts(30, 30, 15) == [0]
    assert window_starts(31, 30, 15) == [0, 1]  # the last is aligned to the end
    assert window_starts(90, 30, 15) == [0, 15, 30, 45, 60]
    assert window_starts(100, 30, 15) == [0, 15, 30, 45, 60, 70]
    assert window_starts(100, 30, 30) == [0, 30, 60, 70]
    with pytest.raises(ValueError, match="stride <= room"):
        window_starts(100, 30, 31)  # a gap between windows
    with pytest.raises(ValueError):
        window_starts(100, 0, 1)


@given(n=st.integers(1, 400), room=st.integers(1, 60), data=st.data())
def test_windows_cover_every_token_and_every_short_span(n, room, data):
    stride = data.draw(st.integers(1, room))
    starts = window_starts(n, room, stride)
    assert starts[0] == 0 and starts == sorted(set(starts))
    assert all(0 <= s and s + min(room, n) <= n for s in starts)  # full windows, in range
    assert starts[-1] + room >= n  # the last reaches the end
    assert all(b - a <= stride for a, b in zip(starts, starts[1:], strict=False))
    # Any span of up to room - stride + 1 tokens lies wholly inside some window.
    length = data.draw(st.integers(1, max(1, min(n, room - stride + 1))))
    ts = data.draw(st.integers(0, n - length))
    assert any(s <= ts and ts + length <= s + room for s in starts)


def test_window_target_only_where_the_whole_span_lies():
    # A window holding context tokens [10, 20), its first at model position 3.
    assert window_target((12, 15), first=10, length=10, context_lo=3) == (5, 8)
    assert window_target((10, 20), 10, 10, 3) == (3, 13)
    assert window_target((8, 12), 10, 10, 3) == NO_SPAN  # starts before the window
    assert window_target((18, 21), 10, 10, 3) == NO_SPAN  # ends after it
    assert window_target(None, 10, 10, 3) == NO_SPAN


def _chars(text: str):
    """A char tokenizer's ids and offsets (id = 10 + position, to tell them apart)."""
    return [10 + i for i in range(len(text))], [(i, i + 1) for i in range(len(text))]


def test_an_example_three_times_the_context_has_its_answer_in_the_last_window():
    text = "".join(chr(ord("a") + i % 26) for i in range(90))  # block 32: room 30
    ids, offsets = _chars(text)
    windows = cut_windows(7, [], ids, offsets, (84, 88), block_size=32)
    assert [w.first for w in windows] == [0, 15, 30, 45, 60]
    for w in windows:
        assert len(w.ids) == 32 and w.example == 7
        assert w.ids[0] == BOS_ID and w.ids[-1] == EOS_ID and w.context == (1, 31)
        assert w.ids[1:31] == ids[w.first:w.first + 30]
    assert [w.span for w in windows] == [NO_SPAN] * 4 + [(84 - 60 + 1, 88 - 60 + 1)]
    last = windows[-1]
    assert window_char_span(last, *last.span) == (84, 88)
    assert text[84:88] == "".join(chr(ord("a") + i % 26) for i in range(84, 88))


def test_every_window_keeps_the_prefix_and_offsets_stay_in_the_context():
    context = "x" * 50
    ids, offsets = _chars(context)
    prefix = [5, 6, 7]
    windows = cut_windows(0, prefix, ids, offsets, (40, 45), block_size=20)
    room = context_room(20, 3)  # 14
    assert [w.first for w in windows] == window_starts(50, room, default_stride(room))
    for w in windows:
        assert w.ids[:5] == [BOS_ID, 5, 6, 7, EOS_ID] and w.ids[-1] == EOS_ID
        assert w.context == (5, 5 + room)
        # Prefix and special positions have empty offsets; context positions have their
        # characters in the CONTEXT (not shifted by the prefix).
        assert all(s == e for s, e in w.offsets[:5] + w.offsets[-1:])
        assert w.offsets[5:-1] == offsets[w.first:w.first + room]
    hit = [w for w in windows if w.span != NO_SPAN]
    assert hit and all(window_char_span(w, *w.span) == (40, 45) for w in hit)


def test_a_prefix_that_fills_the_block_is_refused():
    with pytest.raises(ValueError, match="leaves no room for context"):
        cut_windows(0, list(range(10)), [1, 2], [(0, 1), (1, 2)], None, block_size=12)


def test_best_span_over_windows_compares_margins_and_needs_every_window_to_say_no():
    candidates = [
        (0, (3, 5), -1.0),  # example 0: the first window's best is below no-span ...
        (0, (40, 44), 2.5),  # ... the second's above it: that one wins
        (0, (60, 61), 0.5),
        (1, (1, 2), -0.5),  # example 1: every window prefers no span
        (1, (9, 12), -2.0),
        (2, None, -math.inf),  # example 2: no room for any span in its only window
    ]
    a0, a1, a2 = best_spans(candidates, 3)
    assert (a0.span, a0.score, a0.window) == ((40, 44), 2.5, 1)
    assert (a1.span, a1.score, a1.window) == (None, -0.5, 0)  # the best margin, reported
    assert (a2.span, a2.score) == (None, None)
    # A threshold moves the decision, on the same margins.
    assert best_spans(candidates, 3, threshold=3.0)[0].span is None
    assert best_spans(candidates, 3, threshold=-1.0)[1].span == (1, 2)
    with pytest.raises(ValueError, match="example 1 has no window"):
        best_spans([(0, None, 0.0)], 2)
