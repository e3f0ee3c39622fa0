"""Self-contained HTML pages for inspection reports: one file, no network, text escaped.

A page holds its own CSS and no script; nothing is fetched when it opens (no fonts, no
CDN), so it works offline and leaks nothing. Every piece of text that came from a user, a
tokenizer or a model goes through `esc` (tokens are arbitrary strings: `<script>` is a
perfectly good BPE token sequence).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass

_CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.3em; } h2 { font-size: 1.1em; margin-top: 1.6em; }
table.meta td { padding: 0 1em 0 0; vertical-align: top; }
table.heat { border-collapse: collapse; font: 12px/1.2 ui-monospace, monospace; }
table.heat th { font-weight: normal; color: #555; padding: 2px 4px; white-space: pre; }
table.heat td { border: 1px solid #fff; padding: 3px 5px; text-align: center;
                white-space: pre; min-width: 2.5em; }
table.heat td.na { background: repeating-linear-gradient(45deg, #eee, #eee 4px, #ddd 4px,
                   #ddd 8px); color: #900; }
table.heat td.mark { outline: 2px solid #d33; outline-offset: -2px; }
.legend { color: #555; margin: .4em 0 1em; }
div.text { font: 14px/1.9 ui-monospace, monospace; white-space: pre-wrap; max-width: 60em; }
span.tok { padding: 1px 0; border-radius: 2px; }
span.tok.na { background: #f6c; color: #000; }
span.tok.mark { outline: 1px solid #d33; }
table.flags { border-collapse: collapse; } table.flags td { padding: 3px 8px;
  border-bottom: 1px solid #ddd; vertical-align: top; }
.error { color: #b00; font-weight: bold; } .warning { color: #a60; font-weight: bold; }
.info { color: #357; }
.note { color: #555; }
"""


def esc(text: object) -> str:
    """Escaped text, safe in element content and in quoted attributes."""
    return html.escape(str(text), quote=True)


def show_token(text: str, *, whitespace: bool = True) -> str:
    """A token as a reader should see it: control characters made visible, and with
    `whitespace` also spaces, newlines and tabs (running text keeps those as written)."""
    out = []
    for ch in text:
        if not whitespace and ch in " \n\t":
            out.append(ch)
        elif ch == " ":
            out.append("␣")
        elif ch == "\n":
            out.append("↵")
        elif ch == "\t":
            out.append("⇥")
        elif ord(ch) < 32 or ord(ch) == 127:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return "".join(out) or ("∅" if whitespace else "")


@dataclass(frozen=True)
class Cell:
    """One heatmap cell: the coloured value (None: not finite), its text and tooltip."""

    value: float | None
    text: str
    title: str = ""
    mark: bool = False  # outlined (e.g. the target is top-1 here)


def heatmap(row_labels: Sequence[str], col_labels: Sequence[str],
            cells: Sequence[Sequence[Cell]], *, vmin: float, vmax: float,
            legend: str) -> str:
    """An HTML table coloured from white (vmin) to deep blue (vmax); None cells hatched."""
    head = "".join(f"<th>{esc(c)}</th>" for c in col_labels)
    rows = []
    for label, row in zip(row_labels, cells, strict=True):
        tds = []
        for cell in row:
            cls, style = _look(cell, vmin, vmax)
            tds.append(f'<td{cls}{style} title="{esc(cell.title)}">{esc(cell.text)}</td>')
        rows.append(f"<tr><th>{esc(label)}</th>{''.join(tds)}</tr>")
    return (f'<p class="legend">{esc(legend)}</p>'
            f'<table class="heat"><tr><th></th>{head}</tr>{"".join(rows)}</table>')


def _look(cell: Cell, vmin: float, vmax: float) -> tuple[str, str]:
    """The class and style attributes of a coloured cell (white at vmin, deep blue at
    vmax, hatched when the value is None)."""
    classes = ["mark"] if cell.mark else []
    if cell.value is None:
        classes.append("na")
        style = ""
    else:
        t = min(1.0, max(0.0, (cell.value - vmin) / ((vmax - vmin) or 1.0)))
        # white -> #1f4e9c; text turns white on the dark half
        r, g, b = (round(255 + (c - 255) * t) for c in (0x1F, 0x4E, 0x9C))
        fg = "#fff" if t > 0.55 else "#111"
        style = f' style="background:rgb({r},{g},{b});color:{fg}"'
    cls = f' class="{" ".join(classes)}"' if classes else ""
    return cls, style


def shaded_text(tokens: Sequence[Cell], *, vmin: float, vmax: float, legend: str) -> str:
    """Running text, one span per token, each shaded like a heatmap cell (tooltip: its
    numbers). Whitespace stays as written, so the text reads as the model wrote it."""
    spans = []
    for cell in tokens:
        cls, style = _look(cell, vmin, vmax)
        cls = cls.replace('class="', 'class="tok ') if cls else ' class="tok"'
        spans.append(f'<span{cls}{style} title="{esc(cell.title)}">{esc(cell.text)}</span>')
    return f'<p class="legend">{esc(legend)}</p><div class="text">{"".join(spans)}</div>'


def meta_table(items: Sequence[tuple[str, object]]) -> str:
    """A two-column key/value table (escaped)."""
    rows = "".join(f"<tr><td>{esc(k)}</td><td>{esc(v)}</td></tr>" for k, v in items)
    return f'<table class="meta">{rows}</table>'


def page(title: str, sections: Sequence[str]) -> str:
    """A complete HTML document: inline CSS, the escaped title, and trusted fragments.

    `sections` must be HTML built by this module's functions (or otherwise escaped).
    """
    body = "\n".join(sections)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
            f'style-src \'unsafe-inline\'">'
            f"<title>{esc(title)}</title><style>{_CSS}</style></head>\n"
            f"<body><h1>{esc(title)}</h1>\n{body}\n</body></html>\n")
