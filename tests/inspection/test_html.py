"""The HTML page: one self-contained file, every piece of text escaped."""

from __future__ import annotations

import re

from llmkit.inspect.html import Cell, heatmap, page, show_token


def test_text_is_escaped_and_nothing_is_fetched():
    evil = '<script>alert("x")</script>'
    cells = [[Cell(0.5, evil, title=evil + '" onmouseover="x'), Cell(None, "n/a")]]
    html = page(evil, [heatmap([evil], ["a&b", "<i>"], cells, vmin=0, vmax=1,
                                legend=evil)])
    assert "<script" not in html
    assert "&lt;script&gt;" in html and "a&amp;b" in html and "&lt;i&gt;" in html
    assert '" onmouseover="' not in html  # attribute text cannot close its quotes
    assert not re.search(r"(src|href)\s*=|https?://|@import|url\(", html)
    assert 'class="na"' in html  # a missing value is shown as missing, not as 0


def test_cells_are_coloured_by_value():
    html = heatmap(["r"], ["lo", "hi"], [[Cell(0.0, "a"), Cell(1.0, "b")]], vmin=0, vmax=1,
                   legend="")
    assert "rgb(255,255,255)" in html and "rgb(31,78,156)" in html


def test_tokens_show_their_whitespace():
    assert show_token(" the\n") == "␣the↵"
    assert show_token("") == "∅"
    assert show_token("\x00") == "\\x00"
