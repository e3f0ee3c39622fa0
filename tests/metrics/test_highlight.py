"""Marking gold and predicted spans in text, and rendering them for TensorBoard."""

from __future__ import annotations

import html
import re
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tensorboard.plugin_util import markdown_to_safe_html

from llmkit.metrics.highlight import mark_spans, render_span_sample

# --- mark_spans: exact output -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "gold", "pred", "expected"),
    [
        ("hello world", (0, 5), (6, 11), "[[hello]] {{world}}"),
        ("abc", (0, 1), (0, 1), "[[{{a}}]]bc"),  # first character, identical spans
        ("abc", (2, 3), (1, 3), "a{{b[[c]]}}"),  # last character, gold nested in pred
        ("abc", (0, 3), None, "[[abc]]"),  # whole text
        ("abc", None, (0, 3), "{{abc}}"),
        ("abcdefgh", (1, 7), (3, 5), "a[[bc{{de}}fg]]h"),  # pred nested in gold
        ("abcdefgh", (2, 5), (3, 7), "ab[[c{{de]]fg}}h"),  # crossing
        ("abcdefgh", (3, 7), (2, 5), "ab{{c[[de}}fg]]h"),  # crossing the other way
        ("abcdef", (1, 3), (1, 5), "a{{[[bc]]de}}f"),  # same start: the longer opens first
        ("abcdef", (1, 5), (3, 5), "a[[bc{{de}}]]f"),  # same end: the shorter closes first
        ("abcd", (0, 2), (2, 4), "[[ab]]{{cd}}"),  # adjacent: close before open
        ("abcd", (2, 4), (0, 2), "{{ab}}[[cd]]"),
        ("abc", None, None, "abc"),
        ("abc", (0, 0), (3, 3), "abc"),  # empty spans are no-spans, wherever they sit
        ("", None, (0, 0), ""),
    ],
)
def test_mark_spans_exact(text, gold, pred, expected):
    assert mark_spans(text, gold, pred) == expected


@pytest.mark.parametrize(
    ("gold", "pred", "message"),
    [
        ((2, 4), None, r"gold span \(2, 4\) ends past the text, which has 3 characters"),
        (None, (0, 4), r"predicted span \(0, 4\) ends past the text"),
        ((2, 1), None, r"gold span \(2, 1\) is invalid"),
        (None, (-1, 2), r"predicted span \(-1, 2\) is invalid"),
    ],
)
def test_mark_spans_rejects_spans_outside_the_text(gold, pred, message):
    with pytest.raises(ValueError, match=message):
        mark_spans("abc", gold, pred)


# --- mark_spans: the text between the markers is text[start:end] ---------------------------

# No bracket characters, so markers can be found unambiguously in the output.
_plain_text = st.text(alphabet=st.characters(blacklist_characters="[]{}"), max_size=40)


# Printable ASCII (every markdown special included) and newlines, still without brackets;
# TensorBoard's sanitiser replaces control characters, so they cannot be compared.
_printable_text = st.text(
    alphabet=st.sampled_from(sorted(set(string.printable) - set("[]{}\t\r\x0b\x0c"))),
    max_size=40,
)


@st.composite
def text_and_spans(draw: st.DrawFn, texts: st.SearchStrategy[str] = _plain_text):
    text = draw(texts)

    def span():
        start = draw(st.integers(0, len(text)))
        end = draw(st.integers(start, len(text)))
        return draw(st.sampled_from([None, (start, end)]))

    return text, span(), span()


def _between(marked: str, open_mark: str, close_mark: str, other: tuple[str, str]) -> str | None:
    """The text inside one span's markers, with the other span's markers removed."""
    for mark in other:
        marked = marked.replace(mark, "")
    if open_mark not in marked:
        assert close_mark not in marked
        return None
    _, rest = marked.split(open_mark)
    inside, _ = rest.split(close_mark)
    return inside


@given(text_and_spans())
def test_marked_text_round_trips(case):
    text, gold, pred = case
    marked = mark_spans(text, gold, pred)

    assert re.sub(r"\[\[|\]\]|\{\{|\}\}", "", marked) == text
    for span, marks, other in (
        (gold, ("[[", "]]"), ("{{", "}}")),
        (pred, ("{{", "}}"), ("[[", "]]")),
    ):
        inside = _between(marked, *marks, other)
        if span is None or span[0] == span[1]:
            assert inside is None
        else:
            assert inside == text[span[0] : span[1]]


# --- render_span_sample -------------------------------------------------------------------


def test_render_exact():
    out = render_span_sample("abcdefgh", (2, 5), (3, 7), iou=0.5, pred_score=0.87)
    assert out == "    ab[[c{{de]]fg}}h\n\ngold: [2, 5); pred: [3, 7); iou: 0.500; score: 0.870"


def test_render_no_spans_and_lines():
    out = render_span_sample("first line\nsecond", None, (0, 0), iou=1.0)
    assert out == "    first line\n    second\n\ngold: no span; pred: no span; iou: 1.000"

    out = render_span_sample("abc", (0, 3), None, iou=0.0)
    assert out == "    [[abc]]\n\ngold: [0, 3); pred: no span; iou: 0.000"


def _shown_code(markdown: str) -> str:
    """What TensorBoard's text plugin shows inside the code block, as plain text."""
    page = markdown_to_safe_html(markdown)
    match = re.search(r"<pre><code>(.*?)</code></pre>", page, flags=re.DOTALL)
    assert match is not None, page
    return html.unescape(match.group(1))


def test_render_shows_markdown_and_html_literally():
    text = "a *b* __c__ <b>bold</b> `code` ```fence```\n# not a heading\n- not a list [x](y)"
    out = render_span_sample(text, (2, 5), (6, 11), iou=0.0)
    page = markdown_to_safe_html(out)
    for tag in ("<em>", "<strong>", "<b>", "<h1>", "<li>", "<a "):
        assert tag not in page
    assert _shown_code(out) == (
        "a [[*b*]] {{__c__}} <b>bold</b> `code` ```fence```\n# not a heading\n- not a list [x](y)\n"
    )
    # The summary line is a plain paragraph, not a link or anything else.
    assert "<p>gold: [2, 5); pred: [6, 11); iou: 0.000</p>" in page


def _visible_lines(block: str) -> list[str]:
    """Lines without trailing spaces or blank lines at either end (markdown may drop them)."""
    return "\n".join(line.rstrip() for line in block.split("\n")).strip("\n").split("\n")


@given(text_and_spans(_printable_text))
def test_render_shows_the_marked_text(case):
    text, gold, pred = case
    marked = mark_spans(text, gold, pred)
    if not marked.strip():
        return  # nothing visible to compare
    shown = _shown_code(render_span_sample(text, gold, pred, iou=0.25))
    assert _visible_lines(shown) == _visible_lines(marked)
