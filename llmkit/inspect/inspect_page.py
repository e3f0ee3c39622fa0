"""The HTML page of an `llmkit.inspect` report: one self-contained file to look at.

It lays out what the report holds and computes nothing new: the text with each token
shaded (generated tokens by entropy and by surprisal, prompt tokens by surprisal), the
flags with their numbers, a layers x steps grid of residual L2 with non-finite counts,
and a layers x heads summary of attention.
"""

from __future__ import annotations

import json
import math
from typing import Any

from llmkit.inspect.health import FAULT_CODES, Thresholds, layer_label
from llmkit.inspect.html import Cell, esc, heatmap, meta_table, page, shaded_text, show_token
from llmkit.inspect.inspect_report import thresholds_of


def html_page(report: dict[str, Any]) -> str:
    """The whole page for a (current-version) report."""
    th = thresholds_of(report)
    ck, st = report["checkpoint"], report["settings"]
    m = ck["model"]
    log2v = math.log2(m["vocab_size"])
    meta = meta_table([
        ("checkpoint", f"{ck['path']} (step {ck['step']})"),
        ("model", ", ".join(f"{k}={v}" for k, v in m.items())),
        ("sampling", f"temperature {st['temperature']}, top-k {st['top_k']}, seed "
                     f"{st['seed']}, {st['max_new_tokens']} new tokens at most, "
                     f"device {st['device']}"),
        ("stopped", report["stopped"]),
        ("thresholds", "; ".join(f"{k} {v['value']:g} ({v['source']})"
                                 for k, v in st["thresholds"].items())),
        ("made", f"{report['created_utc']} by llmkit {report['llmkit_version']}"),
    ])
    sections = [meta, _text(report, log2v), _flags(report), _l2_grid(report),
                _heads(report, th)]
    return page("llmkit inspect: " + report["text"]["prompt"][:60], sections)


def _fmt(v: float | None, digits: int = 2) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def _shown(token: str) -> str:
    return show_token(token, whitespace=False)


def _text(report: dict[str, Any], log2v: float) -> str:
    prompt = report["prompt"]
    steps = [s for s in report["steps"] if s["token"] is not None]
    flagged = {s for f in report["health"]["flags"] if f["code"] in FAULT_CODES
               for s in f["steps"]}
    surprisal = [None, *prompt["surprisal_bits"]]  # the leading EOS is not predicted
    prompt_cells = [Cell(v, _shown(t["token"]), f"prompt token {t['token']!r}: surprisal "
                                        f"{_fmt(v)} bits")
                    for t, v in zip(prompt["tokens"], surprisal, strict=True)][1:]

    def gen_cells(key: str) -> list[Cell]:
        return [Cell(s[key], _shown(s["token"]["token"]),
                     f"step {s['step']} {s['token']['token']!r}: entropy "
                     f"{_fmt(s['entropy_bits'])} bits, surprisal {_fmt(s['surprisal_bits'])}"
                     f" bits, top: " + ", ".join(f"{t['token']!r} {_fmt(t['prob'])}"
                                                 for t in s["top"]),
                     mark=s["step"] in flagged) for s in steps]
    top = max([log2v] + [v for v in surprisal if v is not None]
              + [s["surprisal_bits"] for s in steps if s["surprisal_bits"] is not None])
    by_entropy = shaded_text([*prompt_cells, *gen_cells("entropy_bits")], vmin=0.0,
                             vmax=log2v, legend=(
        f"Prompt tokens shaded by surprisal, generated tokens by next-token entropy "
        f"(white 0 bits, blue log2 V = {log2v:.2f} bits); a red outline marks a step "
        f"named by a fault flag. Hover for the numbers."))
    by_surprisal = shaded_text([*prompt_cells, *gen_cells("surprisal_bits")], vmin=0.0,
                               vmax=top, legend=(
        f"Every token shaded by its surprisal -log2 p (white 0, blue {top:.2f} bits)."))
    return "<h2>Text</h2>" + by_entropy + by_surprisal


def _flags(report: dict[str, Any]) -> str:
    flags = report["health"]["flags"]
    if not flags:
        return "<h2>Health</h2><p>No flag raised.</p>"
    rows = []
    for f in flags:
        numbers = json.dumps(f["numbers"], ensure_ascii=False)
        if len(numbers) > 600:
            numbers = numbers[:600] + "…"
        rows.append(f'<tr><td class="{esc(f["severity"])}">{esc(f["severity"])}</td>'
                    f"<td>{esc(f['code'])}</td><td>{esc(f['message'])}<br>"
                    f'<span class="note">{esc(numbers)}</span><br>'
                    f'<span class="note">next: {esc(f["suggestion"])}</span></td></tr>')
    return f'<h2>Health</h2><table class="flags">{"".join(rows)}</table>'


def _l2_grid(report: dict[str, Any]) -> str:
    steps = report["steps"]
    if not steps:
        return ""
    n_layer = len(steps[0]["l2"])
    flagged = next((f for f in report["health"]["flags"] if f["code"] == "mid_layer_l2"), None)
    marked = set(flagged["steps"]) if flagged else set()
    mark_layers = {int(n[1:]) for n in flagged["numbers"]["layers"]} if flagged else set()
    rows, labels = [], []
    finite = [v for s in steps for v in [s["emb_l2"], *s["l2"]] if v is not None and v > 0]
    lo, hi = (math.log10(min(finite)), math.log10(max(finite))) if finite else (0.0, 1.0)
    for layer in range(n_layer - 1, -2, -1):  # the last block on top, the embedding below
        labels.append(layer_label(layer))
        row = []
        for s in steps:
            v = s["emb_l2"] if layer < 0 else s["l2"][layer]
            bad = s["emb_nonfinite"] if layer < 0 else s["nonfinite"][layer]
            if bad or v is None or v <= 0:
                row.append(Cell(None, f"{bad}✗" if bad else "n/a",
                                f"step {s['step']}, {layer_label(layer)}: {bad} NaN/Inf"))
            else:
                row.append(Cell(math.log10(v), f"{v:.3g}",
                                f"step {s['step']}, {layer_label(layer)}: L2 {v:.4g}",
                                mark=s["step"] in marked and layer in mark_layers))
        rows.append(row)
    grid = heatmap(labels, [str(s["step"]) for s in steps], rows, vmin=lo, vmax=hi,
                   legend="Residual L2 norm at the position that predicts each step's token "
                          "(colour on a log scale); hatched cells hold NaN/Inf (count "
                          "shown); outlined: a mid-layer L2 flag.")
    return "<h2>Layers x steps</h2>" + grid


def _heads(report: dict[str, Any], th: Thresholds) -> str:
    steps = [s for s in report["steps"] if s["heads"] is not None]
    if not steps:
        return "<h2>Attention</h2><p>Not measured (--no-attention).</p>"
    ent0 = steps[0]["heads"]["entropy"]
    n_layer, n_head = len(ent0), len(ent0[0])
    first = {(h["layer"], h["head"]) for f in report["health"]["flags"]
             if f["code"] == "attention_collapse" for h in f["numbers"]["heads"]}

    def mean(key: str, layer: int, head: int) -> float | None:
        vals = [s["heads"][key][layer][head] for s in steps]
        vals = [v for v in vals if v is not None]
        return sum(vals) / len(vals) if vals else None
    rows = []
    for layer in range(n_layer - 1, -1, -1):
        row = []
        for h in range(n_head):
            e, mx, sink = (mean(k, layer, h) for k in ("entropy", "max_weight", "sink"))
            n_col = sum(1 for s in steps if (c := s["heads"]["entropy"][layer][h]) is not None
                        and c < th.collapse_entropy)
            row.append(Cell(e, _fmt(e), f"{layer_label(layer)} head {h}: mean normalised "
                                        f"entropy {_fmt(e)}, mean largest weight {_fmt(mx)}, "
                                        f"mean weight on the first token {_fmt(sink)}, "
                                        f"collapsed at {n_col} of {len(steps)} steps",
                            mark=(layer, h) in first))
        rows.append(row)
    counts = ", ".join(f"{s['step']}:{sum(s['collapsed_heads'])}" for s in steps)
    grid = heatmap([layer_label(i) for i in range(n_layer - 1, -1, -1)],
                   [f"head {h}" for h in range(n_head)], rows, vmin=0.0, vmax=1.0,
                   legend=("Mean normalised attention entropy over the steps (1 = spread "
                           "evenly over every key the row may see, 0 = one key); outlined: "
                           f"collapsed (< {th.collapse_entropy:g}) from the first step."))
    return (f"<h2>Attention heads</h2>{grid}<p class=\"note\">collapsed heads per step "
            f"(step:count): {esc(counts)}</p>")
