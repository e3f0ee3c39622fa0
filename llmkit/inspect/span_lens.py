"""The span lens: at which depth a span model's start/end decision forms.

The same idea as the logit lens, for a span checkpoint: each layer's residual stream goes
through the final LayerNorm (its own statistics) and the span head, and the result is
decoded exactly as the model's own output is (`decode_spans`, same length limit and
no-span threshold). Per layer the report gives the decoded character span, its score, the
entropy of the start and end distributions, and its IoU with the final prediction and, when
given, with the gold span. The last layer's view is the model's prediction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from llmkit.inspect.lens import layer_name
from llmkit.inspect.numerics import NonFinite, entropy_bits, finite_or_none, log_probs
from llmkit.metrics.spans import span_iou
from llmkit.models import SpanModel, decode_spans
from llmkit.tokenizer import token_span_to_char_span


@torch.no_grad()
def span_lens_run(model: SpanModel, ids: Sequence[int], offsets: Sequence[tuple[int, int]],
                  text: str, *, max_span_tokens: int, nospan_threshold: float,
                  gold: tuple[int, int] | None, token_text: Callable[[int], str]
                  ) -> dict[str, Any]:
    """The per-layer span view of one text; a plain-data value from its own forward pass.

    Args:
        ids, offsets: the model input `[BOS] tokens [EOS]` and each position's character
            offsets (one window, `llmkit.data.windows.cut_window`).
        gold: the gold character span `[start, end)` (exclusive), `(0, 0)` for "no span",
            or None when unknown.
    """
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        x = torch.tensor([list(ids)], dtype=torch.long, device=device)
        mask = torch.ones_like(x, dtype=torch.bool)
        out = model.transformer.inspect(x, mask)
        nf = NonFinite()
        layers: list[dict[str, Any]] = []
        for i, h in enumerate(out.hidden):  # the per-layer loop: each layer its own ln_f
            logits = model.span_head(model.transformer.ln_f(h))  # (1, T, 2)
            start_logits, end_logits = logits.unbind(dim=-1)  # (1, T) each
            starts, ends, scores = decode_spans(start_logits, end_logits, mask,
                                                max_span_tokens, nospan_threshold)
            ts, te = int(starts[0]), int(ends[0])
            char_span = token_span_to_char_span(offsets, ts, te) if te > ts else (0, 0)
            where = f"layers[{i}]"
            start_lp, end_lp = log_probs(start_logits[0]), log_probs(end_logits[0])
            layers.append({
                "layer": i,
                "name": layer_name(i),
                "token_span": [ts, te],
                "span": list(char_span),
                "span_text": text[char_span[0]:char_span[1]],
                "score": finite_or_none(scores[0], f"{where}.score", nf),
                "start_entropy_bits": finite_or_none(entropy_bits(start_lp),
                                                     f"{where}.start_entropy_bits", nf),
                "end_entropy_bits": finite_or_none(entropy_bits(end_lp),
                                                   f"{where}.end_entropy_bits", nf),
                "start_prob": finite_or_none(start_lp.exp(), f"{where}.start_prob", nf),
                "end_prob": finite_or_none(end_lp.exp(), f"{where}.end_prob", nf),
            })
    finally:
        model.train(was_training)

    final = layers[-1]["span"]
    for layer in layers:
        layer["iou_final"] = span_iou(*layer["span"], *final)
        layer["iou_gold"] = span_iou(*layer["span"], *gold) if gold is not None else None
    return {
        "name": "prompt",
        "lens": "span",
        "text": text,
        "tokens": [token_text(t) for t in ids],
        "gold": list(gold) if gold is not None else None,
        "layers": layers,
        "summary": {
            "first_final_layer": settled_layer([layer["span"] == final for layer in layers]),
            "first_gold_layer": (next((layer["layer"] for layer in layers
                                       if layer["iou_gold"] == 1.0), None)
                                 if gold is not None else None),
        },
        "nonfinite": nf.entries,
    }


def settled_layer(agrees: Sequence[bool]) -> int | None:
    """The first layer from which every later layer agrees (with the final prediction)."""
    first = None
    for i in range(len(agrees) - 1, -1, -1):
        if not agrees[i]:
            break
        first = i
    return first
