"""What `llmkit lens` hands the user: the JSON schema, the console table and the HTML page.

All three read the same run values (`lens_run`, `span_lens_run`); nothing here computes a
per-layer number, it only lays them out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llmkit.inspect.html import Cell, esc, heatmap, meta_table, page, show_token
from llmkit.inspect.numerics import NonFinite

SCHEMA = "llmkit.lens"
VERSION = 1

_NUM = {"type": ["number", "null"]}
_INT_OR_NULL = {"type": ["integer", "null"]}
_NONFINITE = {"type": "array", "items": {
    "type": "object", "required": ["where", "value"], "additionalProperties": False,
    "properties": {"where": {"type": "string"},
                   "value": {"type": "string", "enum": ["nan", "inf", "-inf"]}}}}
_TOKEN = {"type": "object", "required": ["id", "token"],
          "properties": {"id": {"type": "integer", "minimum": 0}, "token": {"type": "string"},
                         "prob": _NUM}}
_LM_LAYER = {"type": "object", "required": ["layer", "name", "positions"], "properties": {
    "layer": {"type": "integer", "minimum": 0}, "name": {"type": "string"},
    "positions": {"type": "array", "items": {
        "type": "object", "additionalProperties": False,
        "required": ["position", "top", "entropy_bits", "kl_bits", "target_rank",
                     "target_prob"],
        "properties": {"position": {"type": "integer", "minimum": 0},
                       "top": {"type": "array", "items": _TOKEN},
                       "entropy_bits": _NUM, "kl_bits": _NUM,
                       "target_rank": _INT_OR_NULL, "target_prob": _NUM}}}}}
_SPAN_LAYER = {"type": "object", "required": [
    "layer", "name", "token_span", "span", "span_text", "score", "iou_final", "iou_gold",
    "start_entropy_bits", "end_entropy_bits", "start_prob", "end_prob"], "properties": {
    "layer": {"type": "integer", "minimum": 0}, "name": {"type": "string"},
    "token_span": {"type": "array", "items": {"type": "integer", "minimum": 0}},
    "span": {"type": "array", "items": {"type": "integer", "minimum": 0}},
    "span_text": {"type": "string"}, "score": _NUM, "iou_final": {"type": "number"},
    "iou_gold": _NUM, "start_entropy_bits": _NUM, "end_entropy_bits": _NUM,
    "start_prob": {"type": "array", "items": _NUM},
    "end_prob": {"type": "array", "items": _NUM}}}
_RUN = {"type": "object", "required": ["name", "lens", "text", "tokens", "layers", "summary",
                                       "nonfinite"], "properties": {
    "name": {"type": "string"},
    "lens": {"type": "string", "enum": ["logit", "tuned", "span"]},
    "text": {"type": "string"},
    "tokens": {"type": "array", "items": {"type": "string"}},
    "target": {"type": ["object", "null"]},
    "gold": {"type": ["array", "null"], "items": {"type": "integer"}},
    "layers": {"type": "array", "items": {"type": "object"}},
    "summary": {"type": "object"},
    "nonfinite": _NONFINITE}}
LENS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["schema", "version", "llmkit_version", "created_utc", "checkpoint",
                 "settings", "runs", "summary", "tuned_lens", "notes", "nonfinite"],
    "additionalProperties": False,
    "properties": {
        "schema": {"type": "string", "enum": [SCHEMA]},
        "version": {"type": "integer", "enum": [VERSION]},
        "llmkit_version": {"type": "string"},
        "created_utc": {"type": "string"},
        "checkpoint": {"type": "object", "required": [
            "path", "step", "task", "tokenizer_hash", "fingerprint", "model"], "properties": {
            "path": {"type": "string"}, "step": _INT_OR_NULL,
            "task": {"type": "string", "enum": ["lm", "span"]},
            "tokenizer_hash": {"type": "string"}, "fingerprint": {"type": "string"},
            "model": {"type": "object", "additionalProperties": {"type": ["integer",
                                                                           "boolean"]}}}},
        "settings": {"type": "object", "additionalProperties": {
            "type": "object", "required": ["value", "source"], "properties": {
                "source": {"type": "string", "enum": ["default", "flag"]}}}},
        "runs": {"type": "array", "items": _RUN},
        "summary": {"type": "array", "items": {"type": "object"}},
        "tuned_lens": {"type": ["object", "null"], "properties": {
            "path": {"type": "string"},
            "val_kl_bits": {"type": "object", "required": ["logit", "tuned"],
                            "additionalProperties": {"type": "array", "items": _NUM}}}},
        "notes": {"type": "array", "items": {"type": "string"}},
        "nonfinite": _NONFINITE,
    },
}


def validate_lens_report(report: dict[str, Any]) -> None:
    """Check a lens report, including each run's layer records for its kind."""
    from llmkit.inspect.report import validate

    validate(report, LENS_SCHEMA)
    for run in report["runs"]:
        layer_schema = _SPAN_LAYER if run["lens"] == "span" else _LM_LAYER
        validate(run["layers"], {"type": "array", "items": layer_schema})


def collect_nonfinite(runs: Sequence[dict[str, Any]], extra: NonFinite) -> list[dict]:
    """The report's `nonfinite` list: each run's entries under `runs[i].`, then `extra`."""
    out = [{"where": f"runs[{i}].{e['where']}", "value": e["value"]}
           for i, run in enumerate(runs) for e in run["nonfinite"]]
    return out + extra.entries


def run_summary(run: dict[str, Any]) -> dict[str, Any]:
    """One line of the report's top-level summary."""
    return {"run": run["name"], "lens": run["lens"], **run["summary"]}


# --------------------------------------------------------------------------------------
# Console
# --------------------------------------------------------------------------------------


def _fmt_p(p: float | None) -> str:
    return "  n/a" if p is None else f"{p:.2f}"


def _cell(token: str, width: int) -> str:
    text = show_token(token)
    return text if len(text) <= width else text[: width - 1] + "…"


def console_lm(run: dict[str, Any]) -> str:
    """Layers x positions: each cell the top-1 token and its probability."""
    target = run["target"]
    head = f"{run['name']} ({run['lens']} lens): {run['text']!r}"
    if target is not None:
        head += f" -> target {show_token(target['token'])!r}"
    positions = [p["position"] for p in run["layers"][0]["positions"]]
    width = 8
    cols = "".join(f" {_cell(run['tokens'][t], width):>{width}}     " for t in positions)
    lines = [head, f"{'layer':>6} {cols}"]
    for layer in run["layers"]:
        cells = []
        for p in layer["positions"]:
            top = p["top"][0]
            cells.append(f" {_cell(top['token'], width):>{width}} {_fmt_p(top['prob'])}")
        lines.append(f"{layer['name']:>6} {''.join(cells)}")
    s = run["summary"]
    if target is not None:
        first = s["first_top1_layer"]
        lines.append("  target first top-1 at: " + (
            run["layers"][first]["name"] if first is not None else "no layer"))
    copied = s["copy_collapse"]
    if copied is not None:
        names = [run["layers"][i]["name"] for i in copied["layers"]]
        lines.append(f"  copy-collapse: {show_token(copied['token'])!r} copied from the "
                     f"prompt at {', '.join(names)}")
    if "control_margin_bits" in s:
        margins = " ".join("n/a" if m is None else f"{m:+.2f}"
                           for m in s["control_margin_bits"])
        first = s["first_positive_margin_layer"]
        lines.append(f"  control margin (bits, per layer): {margins}; first positive: "
                     + (run["layers"][first]["name"] if first is not None else "none"))
    return "\n".join(lines)


def console_span(run: dict[str, Any]) -> str:
    """One line per layer: the decoded span, its score and IoU with final (and gold)."""
    lines = [f"span lens: {run['text']!r}" + (f" gold {run['gold']}" if run["gold"] else ""),
             f"{'layer':>6}  {'span':>10}  {'score':>7}  {'iou_final':>9}  iou_gold  text"]
    for layer in run["layers"]:
        s, e = layer["span"]
        span = f"[{s}, {e})" if e > s else "no span"
        score = "n/a" if layer["score"] is None else f"{layer['score']:.2f}"
        gold = "" if layer["iou_gold"] is None else f"{layer['iou_gold']:.2f}"
        lines.append(f"{layer['name']:>6}  {span:>10}  {score:>7}  {layer['iou_final']:>9.2f}"
                     f"  {gold:>8}  {layer['span_text']!r}")
    first = run["summary"]["first_final_layer"]
    lines.append("  final span settled at: "
                 + (run["layers"][first]["name"] if first is not None else "no layer"))
    return "\n".join(lines)


# --------------------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------------------

QUANTITIES = ("entropy", "kl", "top_prob", "target_prob")
_LEGENDS = {
    "entropy": "colour: entropy of the layer's next-token distribution (bits; darker = more "
               "spread out)",
    "kl": "colour: KL(model || layer) in bits (darker = further from the final prediction)",
    "top_prob": "colour: probability of the top-1 token (darker = more confident)",
    "target_prob": "colour: probability of the target (the next prompt token; after the "
                   "last, --target)",
}


def _value(p: dict[str, Any], quantity: str) -> float | None:
    return {"entropy": p["entropy_bits"], "kl": p["kl_bits"], "top_prob": p["top"][0]["prob"],
            "target_prob": p["target_prob"]}[quantity]


def html_page(report: dict[str, Any], quantity: str) -> str:
    """One self-contained page: a layers x positions heatmap per run, top token in each."""
    ck = report["checkpoint"]
    sections = [meta_table([("checkpoint", ck["path"]), ("step", ck["step"]),
                            ("model", ", ".join(f"{k}={v}" for k, v in ck["model"].items())),
                            ("llmkit", report["llmkit_version"]),
                            ("created (UTC)", report["created_utc"])])]
    for note in report["notes"]:
        sections.append(f'<p class="note">{esc(note)}</p>')
    for run in report["runs"]:
        if run["lens"] == "span":
            sections.append(_span_section(run))
        else:
            sections.append(_lm_section(run, quantity))
    if report["nonfinite"]:
        items = "".join(f"<li>{esc(e['where'])}: {esc(e['value'])}</li>"
                        for e in report["nonfinite"])
        sections.append(f"<h2>Non-finite values (shown hatched)</h2><ul>{items}</ul>")
    return page("llmkit lens", sections)


def _lm_section(run: dict[str, Any], quantity: str) -> str:
    positions = [p["position"] for p in run["layers"][0]["positions"]]
    cols = [show_token(run["tokens"][t]) for t in positions]
    rows, labels, values = [], [], []
    for layer in reversed(run["layers"]):  # the output layer on top, as in the classic plots
        labels.append(layer["name"])
        row = []
        for p in layer["positions"]:
            top = p["top"][0]
            v = _value(p, quantity)
            values.append(v)
            tip = (f"{layer['name']} @ {show_token(run['tokens'][p['position']])}: top "
                   + ", ".join(f"{show_token(t['token'])} {_fmt_p(t['prob'])}"
                               for t in p["top"])
                   + f"; entropy {_fmt_p(p['entropy_bits'])} bits; KL "
                   f"{_fmt_p(p['kl_bits'])} bits")
            if p["target_rank"] is not None:
                tip += f"; target rank {p['target_rank']} p {_fmt_p(p['target_prob'])}"
            row.append(Cell(v, show_token(top["token"]), tip, mark=p["target_rank"] == 0))
        rows.append(row)
    finite = [v for v in values if v is not None]
    vmax = max(finite) if finite and quantity in ("entropy", "kl") else 1.0
    title = f"{run['name']} — {run['lens']} lens: {run['text']}"
    if run["target"] is not None:
        title += f" → {show_token(run['target']['token'])}"
    legend = _LEGENDS[quantity] + "; cell text: top-1 token; outlined: the target is top-1"
    return (f"<h2>{esc(title)}</h2>"
            + heatmap(labels, cols, rows, vmin=0.0, vmax=vmax or 1.0, legend=legend))


def _span_section(run: dict[str, Any]) -> str:
    cols = [show_token(t) for t in run["tokens"]]
    rows, labels = [], []
    for layer in reversed(run["layers"]):
        labels.append(f"{layer['name']} (IoU {layer['iou_final']:.2f})")
        ts, te = layer["token_span"]
        row = []
        for j, (ps, pe) in enumerate(zip(layer["start_prob"], layer["end_prob"],
                                         strict=True)):
            v = None if ps is None or pe is None else max(ps, pe)
            text = "S" if ps is not None and pe is not None and ps >= pe else "E"
            row.append(Cell(v, text if v is not None and v >= 0.05 else "",
                            f"{layer['name']} @ {cols[j]}: P(start) {_fmt_p(ps)}, "
                            f"P(end) {_fmt_p(pe)}", mark=ts <= j < te))
        rows.append(row)
    gold = f", gold {run['gold']}" if run["gold"] is not None else ""
    legend = ("colour: max(P(start), P(end)) at each token; S/E: which is larger; outlined: "
              "the span this layer decodes")
    spans = "".join(f"<li>{esc(layer['name'])}: {esc(show_token(layer['span_text']))} "
                    f"{esc(layer['span'])}</li>" for layer in run["layers"])
    return (f"<h2>{esc('span lens: ' + run['text'] + gold)}</h2>"
            + heatmap(labels, cols, rows, vmin=0.0, vmax=1.0, legend=legend)
            + f"<ul>{spans}</ul>")
