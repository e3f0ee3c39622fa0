"""The only conversions between character spans and token spans.

Both kinds of span are exclusive: `[start, end)`. Conversion goes through the offsets that
the tokenizer gives for each position (`Tokenizer.encode_offsets`), never through `± 1`
arithmetic.

Positions whose offsets are empty (`start == end`) cover no character and never take part
in a conversion. BOS (stored as `(0, 0)`), EOS (`(len, len)`) and padding are such
positions, and so are bpe tokens made only of spaces (their spaces are trimmed away). So
callers pass the offsets of the whole model sequence, `[BOS] tokens [EOS]` included, and
get back model positions directly: there is nothing to add or subtract.
"""

from __future__ import annotations

from collections.abc import Sequence

# One (start, end) per position: tuples, or lists of two ints as read back from JSON.
Offsets = Sequence[Sequence[int]]


def char_span_to_token_span(offsets: Offsets, start: int, end: int) -> tuple[int, int] | None:
    """The smallest token span whose characters contain the character span `[start, end)`.

    The token span `(ts, te)` runs from the first to the last position whose characters
    overlap `[start, end)`. Its character span (`token_span_to_char_span`) always contains
    `[start, end)`, and equals it when `start` and `end` fall on token boundaries; when a
    token is only partly inside, the whole token is taken.

    Returns None, and never a shifted or shrunk span, when no token span can hold the
    characters: the span is empty, lies beyond the tokens (truncated text), or its first or
    last character belongs to no token (a space that bpe trimmed from "Ġword"; strip
    whitespace from span edges before converting).

    Raises:
        ValueError: `start` is negative or `end < start` (a caller bug: validate data first).
    """
    if start < 0 or end < start:
        raise ValueError(f"character span ({start}, {end}) is not a span: need 0 <= start <= end")
    if start == end:
        return None  # no characters to hold ("no span" is data's `null`, not an empty span)
    ts = te = None
    for p, (s, e) in enumerate(offsets):
        if s < e and s < end and e > start:
            if ts is None:
                ts = p
            te = p + 1
    if ts is None or te is None:
        return None
    cs, ce = token_span_to_char_span(offsets, ts, te)
    if cs > start or ce < end:
        return None
    return ts, te


def token_span_to_char_span(offsets: Offsets, ts: int, te: int) -> tuple[int, int]:
    """The character span `[start, end)` covered by the tokens at positions `ts .. te-1`.

    Positions with empty offsets (BOS, EOS, padding, space-only bpe tokens) add no
    characters; a token span holding only such positions gives the empty span at the
    first one's offset. "No span" (the token span `(0, 0)`) is the caller's to handle.

    Raises:
        ValueError: not `0 <= ts < te <= len(offsets)` (a caller bug).
    """
    if not 0 <= ts < te <= len(offsets):
        raise ValueError(
            f"token span ({ts}, {te}) is not a non-empty span of the {len(offsets)} positions"
        )
    spans = [(s, e) for s, e in offsets[ts:te] if s < e]
    if not spans:
        s = offsets[ts][0]
        return s, s
    # min/max rather than first/last: the tokens of one multi-byte character may share or
    # overlap their offsets.
    return min(s for s, _ in spans), max(e for _, e in spans)
