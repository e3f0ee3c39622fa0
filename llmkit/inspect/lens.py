"""The logit lens (and, with translators, the tuned lens) of a causal language model.

Reading a model's residual stream after the embedding and after each block as if it were
the last one: each state goes through the final LayerNorm, with *its own* statistics,
and the tied unembedding. Where the right next token becomes the top choice says at which
depth a prediction forms.

Two rules make the classic per-layer bugs (DESIGN.md, problem 5) impossible here:

- Every per-layer quantity is computed inside the one per-layer loop, `lens_logits`,
  from that layer's own state: there is no unembedding outside it to reuse by mistake,
  and no cached normalisation from another layer.
- A run (one lens on one prompt) is a value computed from its own forward pass by
  `lens_run`; windows such as copy-collapse are slices of that run's own arrays. Nothing
  is carried from one run, lens or variant to the next, so the order runs are computed in
  cannot change any of them.

Layer numbering: layer 0 is the embedding output, layer i the output of block i - 1, layer
n_layer the last block's output, whose lens is the model's own prediction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn
from torch.nn import functional as F

from llmkit.inspect.numerics import (
    LN2,
    NonFinite,
    entropy_bits,
    finite_or_none,
    kl_bits,
    log_probs,
    token_rank,
)
from llmkit.models import CausalLM

Translate = Callable[[int, torch.Tensor], torch.Tensor]  # (layer, state) -> state


def layer_name(i: int) -> str:
    """How a layer is called in tables: `emb`, `h0` ... (the output of block 0 ...)."""
    return "emb" if i == 0 else f"h{i - 1}"


def lens_logits(model: CausalLM, hidden: Sequence[torch.Tensor],
                translate: Translate | None = None) -> Iterator[torch.Tensor]:
    """Each layer's lens logits (..., V), one layer at a time: THE per-layer loop.

    `hidden` is `GPT.inspect(...).hidden` (n_layer + 1 states before ln_f). Each state is
    translated (tuned lens; the last layer never is), normalised by ln_f with its own mean
    and variance, and unembedded over the real vocabulary, all inside this loop. Callers
    reduce each layer's logits before asking for the next, so at most one layer's (.., V)
    tensor is alive at a time.
    """
    last = len(hidden) - 1
    for i, h in enumerate(hidden):
        if translate is not None and i < last:
            h = translate(i, h)
        yield model.logits(model.transformer.ln_f(h))


# --------------------------------------------------------------------------------------
# Aggregates over many windows: validation KL, the training monitor
# --------------------------------------------------------------------------------------


@torch.no_grad()
def layer_stats(model: CausalLM, x: torch.Tensor, y: torch.Tensor | None = None,
                translate: Translate | None = None) -> dict[str, torch.Tensor]:
    """Per-layer means over every token of a batch, each an (n_layer + 1,) float32 tensor.

    - `kl_bits`: KL(model || layer) in bits, 0 at the last layer by construction;
    - `top1_agree`: how often the layer's top token is the model's top token;
    - `ce_bits` (when targets `y` are given): the layer's own cross-entropy in bits.

    Stays on the model's device; the caller reads it back once.
    """
    out = model.transformer.inspect(x)
    final = log_probs(model.logits(out.x))  # (B, T, V): the model's own prediction
    final_top = final.argmax(dim=-1)  # (B, T)
    kl, agree, ce = [], [], []
    for logits in lens_logits(model, out.hidden, translate):
        logp = log_probs(logits)  # (B, T, V)
        kl.append(kl_bits(final, logp).mean())
        agree.append((logp.argmax(dim=-1) == final_top).float().mean())
        if y is not None:
            nll = F.nll_loss(logp.flatten(0, 1), y.flatten(), ignore_index=-100)
            ce.append(nll / LN2)
    stats = {"kl_bits": torch.stack(kl), "top1_agree": torch.stack(agree)}
    if y is not None:
        stats["ce_bits"] = torch.stack(ce)
    return stats


# --------------------------------------------------------------------------------------
# One run: a lens over one prompt
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LensSettings:
    """What a lens run reports and the thresholds of its findings (all CLI flags)."""

    top_k: int = 5  # tokens shown per layer and position
    positions: Literal["last", "all"] = "last"  # which positions of the prompt to report
    copy_prob: float = 0.5  # copy-collapse: the copied token has at least this probability
    copy_margin: float = 0.2  # ... and leads the runner-up by at least this much
    copy_window: int = 2  # ... over at least this many consecutive layers

    def __post_init__(self) -> None:
        if self.top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {self.top_k}")
        if self.positions not in ("last", "all"):
            raise ValueError(f"positions must be 'last' or 'all', got {self.positions!r}")
        if not (0.0 <= self.copy_prob <= 1.0 and 0.0 <= self.copy_margin <= 1.0):
            raise ValueError("copy_prob and copy_margin must be in [0, 1]")
        if self.copy_window < 1:
            raise ValueError(f"copy_window must be >= 1, got {self.copy_window}")


@dataclass(frozen=True)
class LensInput:
    """One prompt to look through.

    `ids` is what the model reads (the prompt's tokens after an EOS that marks a document
    start); `prompt_ids` the prompt's own tokens, which copy-collapse looks for; `target`
    the token expected after the prompt; `foil` a second token whose log-probability is
    subtracted from the target's (the control margin), or None.
    """

    name: str
    text: str
    ids: tuple[int, ...]
    prompt_ids: tuple[int, ...]
    target: int | None = None
    foil: int | None = None


@torch.no_grad()
def lens_run(model: CausalLM, inp: LensInput, settings: LensSettings, lens: str,
             token_text: Callable[[int], str], translate: Translate | None = None
             ) -> dict[str, Any]:
    """The lens of one prompt: a plain-data value computed from its own forward pass.

    Returns a dict ready for JSON (every float went through `finite_or_none`; the places
    of NaN/Inf are in its `nonfinite` list, relative to the run). Positions report, per
    layer: the top-k tokens, entropy, KL to the model's own prediction and, where a target
    is known (the next prompt token, or `inp.target` after the last one), its rank and
    probability.
    """
    was_training = model.training
    model.eval()
    try:
        idx = torch.tensor([inp.ids], dtype=torch.long, device=_device(model))
        out = model.transformer.inspect(idx)
        T = idx.size(1)
        positions = list(range(T)) if settings.positions == "all" else [T - 1]
        pos = torch.tensor(positions, device=idx.device)
        targets = [inp.ids[t + 1] if t + 1 < T else inp.target for t in positions]
        final = log_probs(model.logits(out.x))[0, pos]  # (P, V)

        nf = NonFinite()
        k = min(max(settings.top_k, 2), final.size(-1))
        layers: list[dict[str, Any]] = []
        # the last position's per-layer series, for the run's findings
        top1, top1_p, top2_p, ranks, margins = [], [], [], [], []
        for i, logits in enumerate(lens_logits(model, out.hidden, translate)):
            logits = logits[0, pos]  # (P, V)
            logp = log_probs(logits)
            # one copy to the host per layer; each number then leaves through
            # finite_or_none under the path it has in the report
            ent = entropy_bits(logp).cpu()  # (P,)
            kl = kl_bits(final, logp).cpu()  # (P,)
            top_lp, top_id = logp.topk(k, dim=-1)  # (P, k)
            top_p, top_ids = top_lp.exp().cpu(), top_id.tolist()
            rows = []
            for j, t in enumerate(positions):
                where = f"layers[{i}].positions[{j}]"
                row: dict[str, Any] = {
                    "position": t,
                    "top": [{"id": top_ids[j][r], "token": token_text(top_ids[j][r]),
                             "prob": finite_or_none(top_p[j, r], f"{where}.top[{r}].prob",
                                                    nf)}
                            for r in range(min(settings.top_k, k))],
                    "entropy_bits": finite_or_none(ent[j], f"{where}.entropy_bits", nf),
                    "kl_bits": finite_or_none(kl[j], f"{where}.kl_bits", nf),
                    "target_rank": None,
                    "target_prob": None,
                }
                if targets[j] is not None:
                    tgt = torch.tensor([targets[j]], device=idx.device)
                    rank = finite_or_none(token_rank(logits[j:j + 1], tgt)[0],
                                          f"{where}.target_rank", nf)
                    row["target_rank"] = int(rank) if rank is not None else None
                    row["target_prob"] = finite_or_none(logp[j, targets[j]].exp(),
                                                        f"{where}.target_prob", nf)
                rows.append(row)
            layers.append({"layer": i, "name": layer_name(i),
                           "positions": rows})
            last = rows[-1]
            top1.append(top_ids[-1][0])
            top1_p.append(last["top"][0]["prob"])
            # internal only (not reported): a NaN compares False, so it never copies
            top2_p.append(float(top_p[-1, 1]) if k > 1 else 0.0)
            ranks.append(last["target_rank"])
            if inp.target is not None and inp.foil is not None:
                margin = (logp[-1, inp.target] - logp[-1, inp.foil]) / LN2
                margins.append(finite_or_none(
                    margin, f"summary.control_margin_bits[{i}]", nf))
    finally:
        model.train(was_training)

    copied = copy_collapse(top1, top1_p, top2_p, inp.prompt_ids, settings)
    if copied is not None:
        copied["token"] = token_text(copied["token_id"])
    summary: dict[str, Any] = {
        "first_top1_layer": first_top1_layer(ranks) if inp.target is not None else None,
        "copy_collapse": copied,
    }
    if margins:
        summary["control_margin_bits"] = margins
        summary["first_positive_margin_layer"] = first_positive(margins)
    return {
        "name": inp.name,
        "lens": lens,
        "text": inp.text,
        "tokens": [token_text(t) for t in inp.ids],
        "target": ({"id": inp.target, "token": token_text(inp.target)}
                   if inp.target is not None else None),
        "layers": layers,
        "summary": summary,
        "nonfinite": nf.entries,
    }


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


# --------------------------------------------------------------------------------------
# Findings: pure functions of one run's own per-layer series
# --------------------------------------------------------------------------------------


def first_top1_layer(ranks: Sequence[int | None]) -> int | None:
    """The first layer where the target is the top choice (rank 0), or None."""
    return next((i for i, r in enumerate(ranks) if r == 0), None)


def first_positive(values: Sequence[float | None]) -> int | None:
    """The first layer whose value is > 0 (None values never count), or None."""
    return next((i for i, v in enumerate(values) if v is not None and v > 0), None)


def copy_collapse(top1: Sequence[int], top1_p: Sequence[float | None],
                  top2_p: Sequence[float | None], prompt_ids: Sequence[int],
                  settings: LensSettings) -> dict[str, Any] | None:
    """The first window of `copy_window` consecutive layers that copy a prompt token.

    A layer copies when its top-1 token occurs in the prompt, with probability at least
    `copy_prob` and a lead of at least `copy_margin` over the runner-up. Returns the
    window's layers and the token of its first layer, or None. The window is a slice of
    this run's own series; no state survives the call.
    """
    prompt = set(prompt_ids)
    copying = [
        tok in prompt and p is not None and q is not None
        and p >= settings.copy_prob and p - q >= settings.copy_margin
        for tok, p, q in zip(top1, top1_p, top2_p, strict=True)
    ]
    w = settings.copy_window
    for start in range(len(copying) - w + 1):
        if all(copying[start:start + w]):
            return {"first_layer": start, "layers": list(range(start, start + w)),
                    "token_id": top1[start]}
    return None
