"""`--calibrate`: health thresholds from the checkpoint's own validation data.

Defaults are guesses that must fit every model; a model's own validation text says what
is normal *for it*. Over a few hundred validation windows (every position but the first,
which is the attention sink), three quantities are measured exactly as the generation
measures them, and each threshold is set past what normal text shows:

- `entropy_share`: the 99th percentile of next-token entropy / log2 V;
- `l2_ratio`: twice the 99.9th percentile of a middle layer's L2 over the early layers'
  largest (the ratio the mid-layer flag tests), at least 2;
- `loop_distance`: the 1st percentile of the relative distance between final states 1 ..
  `loop_period` positions apart: "near-identical" means closer than 99% of the state
  pairs that real text produces.

The collapse threshold and the loop lengths are not calibrated (a collapsed head is one
that attends to one key, whatever the data); the report marks each threshold's source.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

import torch

from llmkit.inspect.health import Thresholds, early_and_checked
from llmkit.inspect.numerics import entropy_bits, l2, log_probs, norm
from llmkit.models import CausalLM


@dataclass(frozen=True)
class Calibration:
    """Calibrated thresholds and what they were measured on."""

    thresholds: Thresholds
    windows: int
    positions: int
    calibrated: tuple[str, ...]  # the thresholds that came from the data

    def to_json(self) -> dict[str, Any]:
        return {"windows": self.windows, "positions": self.positions}


@torch.no_grad()
def calibrate(model: CausalLM, batches: Iterable[torch.Tensor], base: Thresholds
              ) -> Calibration:
    """Thresholds measured on validation batches (B, T) of token ids.

    Each batch is reduced to three flat vectors at once; the hidden states are dropped
    before the next batch. `base` supplies the thresholds that are not calibrated.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    n_layer = model.config.n_layer
    early, checked = early_and_checked(n_layer)
    shares, ratios, dists = [], [], []
    windows = positions = 0
    try:
        for x in batches:
            x = x.to(device)
            out = model.transformer.inspect(x)
            logp = log_probs(model.logits(out.x[:, 1:]))  # (B, T - 1, V)
            shares.append((entropy_bits(logp) / math.log2(logp.size(-1))).flatten())
            if len(checked):
                layer_l2 = torch.stack([norm(h[:, 1:]) for h in out.hidden])  # (L + 1, B, T - 1)
                base_l2 = layer_l2[: early + 1].amax(dim=0)  # embedding and the early blocks
                mid = layer_l2[1 + checked.start: 1 + checked.stop].amax(dim=0)
                ratios.append((mid / base_l2).flatten())
            final = out.x[:, 1:].float()  # (B, T - 1, C)
            for p in range(1, base.loop_period + 1):
                if final.size(1) > p:
                    gap = l2(final[:, p:], final[:, :-p]) / norm(final[:, p:])
                    dists.append(gap.flatten())
            windows += x.size(0)
            positions += x.size(0) * (x.size(1) - 1)
            del out, logp, final
    finally:
        model.train(was_training)
    values: dict[str, float] = {}
    share = _quantile(shares, 0.99)
    if share is not None:
        values["entropy_share"] = min(1.0, share)
    ratio = _quantile(ratios, 0.999)
    if ratio is not None:
        values["l2_ratio"] = max(2.0, 2.0 * ratio)
    dist = _quantile(dists, 0.01)
    if dist is not None and dist > 0:
        values["loop_distance"] = dist
    return Calibration(thresholds=replace(base, **values), windows=windows,
                       positions=positions, calibrated=tuple(values))


def _quantile(parts: list[torch.Tensor], q: float) -> float | None:
    """The q-quantile of the finite values in `parts` (None when there are none)."""
    if not parts:
        return None
    values = torch.cat(parts).float().cpu()
    values = values[torch.isfinite(values)]
    if values.numel() == 0:
        return None
    return float(torch.quantile(values, q)) if values.numel() <= 16_000_000 else float(
        values.sort().values[int(q * (values.numel() - 1))])
