"""Long span texts as overlapping token windows, and one answer per example from them.

A span example is a *context* (the text its character spans point into) and an optional
*prefix* (a question, an instruction). Each window the model sees is

    [BOS] prefix [EOS] context[first:first + room] [EOS]     with a prefix
    [BOS] context[first:first + room] [EOS]                  without one

so every window keeps the whole prefix, and EOS doubles as the separator (no extra special
token, so any llmkit tokenizer works). `room` is what is left of `block_size` for context
tokens. A context longer than `room` is cut into windows whose first tokens lie `stride`
apart (the last window is aligned to the end of the context, so every window is full);
consecutive windows overlap by `room - stride` tokens, and a span of up to that many
tokens lies wholly inside at least one window. Nothing is ever truncated or skipped for
length: a longer text only means more windows.

Training targets: a window that holds the whole gold span is trained to point at it; every
other window (including every window of a no-span example) is trained on "no span",
`(0, 0)` at BOS, as extractive-QA trainers do with a document stride.

Predictions: a window's candidate is its best span inside the context part (never in the
prefix, never across the separator) with the score `span logits - no-span logits` of that
window: a log-odds margin that does not depend on how the window's logits are shifted, so
margins of different windows compare on one scale. An example's answer is the candidate
with the highest margin over all its windows; it is "no span" only when no window put a
span above the threshold (`best_spans`).

Everything here is plain Python: the same functions serve `llmkit prepare` (window counts),
the datasets, validation and `llmkit predict`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from llmkit.tokenizer import BOS_ID, EOS_ID
from llmkit.tokenizer.offsets import token_span_to_char_span

NO_SPAN = (0, 0)  # the token span of "no span": both heads point at BOS


@dataclass(frozen=True, slots=True)
class Window:
    """One model input cut from an example.

    Attributes:
        example: index of the example it was cut from (in its dataset or input file).
        first: index, among the example's context tokens, of this window's first one.
        ids: the model's input ids (see the module docstring for the layout).
        offsets: per model position, its characters in the CONTEXT; positions that are
            not context tokens (BOS, prefix, separator, EOS) have empty offsets, so span
            conversion never lands on them.
        context: model positions `[lo, hi)` that hold context tokens; spans are decoded
            only in there.
        span: the training target, a token span in model positions (exclusive end), or
            `(0, 0)` when the example's gold span is not wholly inside this window.
    """

    example: int
    first: int
    ids: list[int]
    offsets: list[tuple[int, int]]
    context: tuple[int, int]
    span: tuple[int, int]


def special_tokens(prefix: bool) -> int:
    """Special tokens in a window: BOS and the final EOS, and the separator after a prefix."""
    return 3 if prefix else 2


def context_room(block_size: int, n_prefix: int) -> int:
    """Context tokens that fit in one window beside `n_prefix` prefix tokens.

    The result is < 1 when the prefix alone fills the block.
    """
    return block_size - n_prefix - special_tokens(n_prefix > 0)


def default_stride(room: int) -> int:
    """Half the room: each context token is seen in about two windows, and any span of up
    to half a window's context lies wholly inside one of them."""
    return max(1, room // 2)


def window_starts(n_tokens: int, room: int, stride: int) -> list[int]:
    """The first context token of each window of a context of `n_tokens` tokens.

    `0, stride, 2 * stride, ...` while a window would end before the context does, then
    one window aligned to the end, so every window but a short context's only one is full.

    Raises:
        ValueError: `room` or `stride` < 1, or `stride > room` (windows would leave gaps).
    """
    if room < 1 or stride < 1 or stride > room:
        raise ValueError(f"need 1 <= stride <= room, got stride {stride}, room {room}")
    if n_tokens <= room:
        return [0]
    starts = list(range(0, n_tokens - room, stride))
    starts.append(n_tokens - room)
    return starts


def example_window_starts(n_context: int, n_prefix: int, block_size: int,
                          stride: int | None = None) -> list[int]:
    """The first context token of each window of an example: `n_context` context tokens
    beside a prefix of `n_prefix` tokens, in windows of `block_size` tokens.

    Args:
        stride: tokens between window starts; None: `default_stride(room)`.

    Raises:
        ValueError: the prefix leaves no room for context, or the stride exceeds the room
            (the data layer turns both into a reported skip with the numbers).
    """
    room = context_room(block_size, n_prefix)
    if room < 1:
        raise ValueError(f"the prefix of {n_prefix} tokens leaves no room for context "
                         f"in a block of {block_size}")
    return window_starts(n_context, room, default_stride(room) if stride is None else stride)


def window_target(token_span: tuple[int, int] | None, first: int, length: int,
                  context_lo: int) -> tuple[int, int]:
    """The training target of a window holding context tokens `[first, first + length)`.

    Args:
        token_span: the gold span in context-token indices (exclusive end), None: no span.
        first, length: which context tokens the window holds.
        context_lo: the model position of the window's first context token.

    Returns:
        The gold span in model positions when it lies wholly inside the window, else
        `(0, 0)` ("no span": this window cannot answer).
    """
    if token_span is None:
        return NO_SPAN
    ts, te = token_span
    if ts < first or te > first + length:
        return NO_SPAN
    return ts - first + context_lo, te - first + context_lo


def cut_window(example: int, prefix_ids: Sequence[int], ids: Sequence[int],
               offsets: Sequence[tuple[int, int]], token_span: tuple[int, int] | None,
               first: int, room: int) -> Window:
    """The window of an example whose context tokens start at `first`.

    Args:
        example: the example's index (carried along, for `best_spans`).
        prefix_ids: the prefix's token ids (empty: no prefix, no separator).
        ids, offsets: the context's token ids and their character offsets in the context
            (`(start, end)` tuples of ints, as `Tokenizer.encode_offsets` and `SpanExample`
            hold them: they are copied as they are).
        token_span: the gold span in context-token indices, or None.
        first: the window's first context token (one of `window_starts`).
        room: context tokens per window (`context_room`).
    """
    part = ids[first:first + room]
    head = [BOS_ID, *prefix_ids, EOS_ID] if prefix_ids else [BOS_ID]
    lo = len(head)
    hi = lo + len(part)
    model_offsets: list[tuple[int, int]] = [(0, 0)] * lo
    model_offsets += offsets[first:first + room]
    end_char = model_offsets[-1][1] if part else 0
    model_offsets.append((end_char, end_char))  # EOS: empty, at the window's last character
    return Window(example=example, first=first, ids=[*head, *part, EOS_ID],
                  offsets=model_offsets, context=(lo, hi),
                  span=window_target(token_span, first, len(part), lo))


def cut_windows(example: int, prefix_ids: Sequence[int], ids: Sequence[int],
                offsets: Sequence[tuple[int, int]], token_span: tuple[int, int] | None,
                block_size: int, stride: int | None = None) -> list[Window]:
    """Every window of one example (see the module docstring), at the starts
    `example_window_starts` gives.

    Raises:
        ValueError: as `example_window_starts`.
    """
    starts = example_window_starts(len(ids), len(prefix_ids), block_size, stride)
    room = context_room(block_size, len(prefix_ids))
    return [cut_window(example, prefix_ids, ids, offsets, token_span, first, room)
            for first in starts]


def window_char_span(window: Window, start: int, end: int) -> tuple[int, int] | None:
    """A decoded token span of `window` (model positions) as a character span of the context.

    `(0, 0)` (or any empty span) is "no span" and gives None.
    """
    if end <= start:
        return None
    return token_span_to_char_span(window.offsets, start, end)


@dataclass(frozen=True, slots=True)
class SpanAnswer:
    """An example's answer: its best span over all its windows."""

    span: tuple[int, int] | None  # character span in the context; None: no span
    score: float | None  # the winning window's margin over its no-span score (None: no
    # window had a candidate span at all)
    window: int  # the winning window's index among the example's windows


def best_spans(candidates: Iterable[tuple[int, tuple[int, int] | None, float]],
               n_examples: int, threshold: float = 0.0) -> list[SpanAnswer]:
    """One answer per example from its windows' candidates.

    Args:
        candidates: `(example, char_span, margin)` per window, in window order: the
            window's best span inside its context (None when it has none) and that span's
            score minus the window's no-span score (`decode_spans` gives both).
        n_examples: examples `0 .. n_examples - 1`; each must have at least one window.
        threshold: a span wins only when its margin exceeds this (`span.nospan_threshold`).

    Returns:
        Per example, the span of the window with the highest margin if that margin is
        above `threshold`, else no span; `score` is the highest margin either way.

    Raises:
        ValueError: an example has no window, or an index is out of range.
    """
    best: list[tuple[float, tuple[int, int] | None, int] | None] = [None] * n_examples
    seen = [0] * n_examples
    for example, span, margin in candidates:
        if not 0 <= example < n_examples:
            raise ValueError(f"window of example {example}, but there are {n_examples}")
        k = seen[example]
        seen[example] += 1
        m = margin if span is not None and not math.isnan(margin) else -math.inf
        current = best[example]
        if current is None or m > current[0]:
            best[example] = (m, span, k)
    out = []
    for i, b in enumerate(best):
        if b is None:
            raise ValueError(f"example {i} has no window")
        margin, span, k = b
        take = span is not None and margin > threshold
        out.append(SpanAnswer(span=span if take else None,
                              score=margin if math.isfinite(margin) else None, window=k))
    return out


def window_candidates(windows: Sequence[Window], starts: Sequence[int], ends: Sequence[int],
                      margins: Sequence[float]
                      ) -> list[tuple[int, tuple[int, int] | None, float]]:
    """`(example, char_span, margin)` per window from `decode_spans`' output for them.

    Call `decode_spans` with `nospan_threshold=-inf`, so that every window hands over its
    best span and margin, and leave the threshold to `best_spans`: the decision is then
    taken once per example, on the best margin of all its windows.
    """
    return [(w.example, window_char_span(w, s, e), float(m))
            for w, s, e, m in zip(windows, starts, ends, margins, strict=True)]
