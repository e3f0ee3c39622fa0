"""Render span predictions as text for TensorBoard's text plugin (`samples/spans`).

Spans here are *character* offsets into the text with an exclusive end, the same
convention as the data files. The markers are:

- gold span: `[[` before its first character and `]]` after its last one;
- predicted span: `{{` before its first character and `}}` after its last one.

Markers are inserted at their positions in the original text, so the text between a
span's two markers is exactly `text[start:end]` once the other span's markers are removed.
When several markers fall on the same position the order is fixed, and chosen so that a
span contained in the other one nests inside it:

1. closing markers before opening markers (adjacent spans never look nested);
2. among closers, the span that opened later closes first (if both opened at the same
   position, `}}` before `]]`);
3. among openers, the span that closes later opens first (if both close at the same
   position, `[[` before `{{`).

So identical spans render as `[[{{abc}}]]`, and crossing spans as `[[ab{{cd]]ef}}`. A text
that itself contains `[[` or `{{` will look ambiguous; the numeric offsets printed by
`render_span_sample` are the authority.
"""

from __future__ import annotations

from collections.abc import Sequence

from llmkit.metrics.spans import check_span

GOLD_OPEN, GOLD_CLOSE = "[[", "]]"
PRED_OPEN, PRED_CLOSE = "{{", "}}"

# Markdown treats a line indented by four spaces as a code block and shows it verbatim.
_CODE_INDENT = "    "


def _checked(span: Sequence[int] | None, n_chars: int, name: str) -> tuple[int, int] | None:
    """`span` as `(start, end)`, or None for a no-span; ValueError if it leaves the text."""
    if span is None:
        return None
    start, end = check_span(*span, name)
    if end > n_chars:
        raise ValueError(
            f"{name} span ({start}, {end}) ends past the text, which has {n_chars} characters"
        )
    return None if start == end else (start, end)


def mark_spans(text: str, gold: Sequence[int] | None, pred: Sequence[int] | None) -> str:
    """Insert `[[`/`]]` around the gold span and `{{`/`}}` around the predicted span.

    Args:
        text: the example's text.
        gold: gold character span `(start, end)`, exclusive end; None or `start == end`
            means "no span" and inserts nothing.
        pred: predicted character span, same convention.

    Returns:
        The text with the markers inserted (order at a shared position: see the module
        docstring).

    Raises:
        ValueError: a span is invalid or ends past the end of `text`.

    Example:
        >>> mark_spans("abcdefgh", gold=(2, 5), pred=(3, 7))
        'ab[[c{{de]]fg}}h'
    """
    events: list[tuple[int, int, int, int, str]] = []
    # rank 0 is gold and 1 is pred; it breaks ties between spans with the same bounds.
    for rank, span, name, (open_mark, close_mark) in (
        (0, gold, "gold", (GOLD_OPEN, GOLD_CLOSE)),
        (1, pred, "predicted", (PRED_OPEN, PRED_CLOSE)),
    ):
        checked = _checked(span, len(text), name)
        if checked is None:
            continue
        start, end = checked
        # Sort keys: position, closers (0) before openers (1), then the nesting rule.
        events.append((end, 0, -start, -rank, close_mark))
        events.append((start, 1, -end, rank, open_mark))
    events.sort()

    pieces: list[str] = []
    cursor = 0
    for pos, _, _, _, mark in events:
        pieces.append(text[cursor:pos])
        pieces.append(mark)
        cursor = pos
    pieces.append(text[cursor:])
    return "".join(pieces)


def code_block(text: str) -> str:
    """`text` as a markdown indented code block: shown verbatim, nothing to escape.

    Every line gets four leading spaces; line breaks of any kind start a new line.
    """
    return "\n".join(_CODE_INDENT + line for line in (text.splitlines() or [""]))


def _describe(span: Sequence[int] | None) -> str:
    if span is None or span[0] == span[1]:
        return "no span"
    return f"[{span[0]}, {span[1]})"


def render_span_sample(
    text: str,
    gold: Sequence[int] | None,
    pred: Sequence[int] | None,
    iou: float,
    pred_score: float | None = None,
) -> str:
    """One span sample as markdown for TensorBoard's text plugin.

    The marked text (see `mark_spans`) goes into an indented code block: every line is
    prefixed with four spaces, so markdown shows it verbatim in a monospaced font, with no
    escaping to get wrong (`*`, `_`, backticks and `<b>` appear as typed, and the markers
    line up with the characters). A fenced block was not used because a text holding
    ```` ``` ```` would end it early. Line breaks of any kind start a new indented line.

    After a blank line follows the summary, e.g.
    `gold: [2, 5); pred: [3, 7); iou: 0.500; score: 0.870` (`no span` for a no-span;
    the score part only when `pred_score` is given). It contains no markdown syntax.

    The result has no trailing newline; join several samples with a blank line
    (`"\\n\\n".join(...)`).

    Raises:
        ValueError: a span is invalid or ends past the end of `text`.
    """
    block = code_block(mark_spans(text, gold, pred))
    summary = f"gold: {_describe(gold)}; pred: {_describe(pred)}; iou: {iou:.3f}"
    if pred_score is not None:
        summary += f"; score: {pred_score:.3f}"
    return f"{block}\n\n{summary}"
