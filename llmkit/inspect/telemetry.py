"""Inference telemetry: a generation in which every step is measured, then reduced at once.

`inspect_generation` generates exactly as `CausalLM.generate` does (the same KV cache
windows, the same `sample_next`, so the same seed gives the same tokens) but runs each
pass through `GPT.inspect`, which hands back every layer's residual stream and, unless
attention is off, every block's attention weights. Each pass is reduced to a few numbers
per layer and head right away (`reduce_pass`); the hidden states and attention matrices
are dropped before the next step, so memory does not grow with the text.

What one step measures, at the position that predicts the step's token:

- the next-token distribution of the model itself (temperature 1, full vocabulary):
  entropy in bits, top-k with probabilities, and the chosen token's surprisal;
- per layer (embedding, then each block's output): the residual's L2 norm and each
  block's cosine between its input and output, in float32; the count of NaN/Inf over all
  positions of the pass (the whole prompt at step 0);
- per head: attention entropy normalised by the number of keys the row may attend to,
  the largest weight and the weight on the window's first token (the sink);
- the relative distance of the final state to the final states 1 .. `loop_period` steps
  back, which the repetition flag needs.

Layer numbering follows the blocks: layer i is the output of `transformer.h[i]`, named
`h{i}`; the embedding output is `emb`.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from llmkit.inspect.numerics import (
    LN2,
    NonFinite,
    attention_entropy,
    cosine,
    entropy_bits,
    finite_or_none,
    l2,
    log_probs,
    norm,
)
from llmkit.models import CausalLM
from llmkit.models.gpt import TrunkOutput, cache_window, sample_next


@dataclass(frozen=True)
class Sampling:
    """How tokens are chosen: the same meaning as `llmkit generate`'s flags."""

    max_new_tokens: int = 50
    temperature: float = 0.8
    top_k: int | None = None
    attention: bool = True  # measure attention (the explicit, slower attention path)
    report_top: int = 5  # tokens (with probabilities) listed per step
    loop_period: int = 4  # final-state distances kept per step (lags 1 .. loop_period)


@dataclass
class Generation:
    """A generation's telemetry, still as small tensors (one set per step)."""

    ids: list[int]  # the model input before the first step (EOS + prompt tokens)
    prompt: dict[str, torch.Tensor]  # see `reduce_prompt`
    steps: list[dict[str, torch.Tensor]]  # see `reduce_pass`
    tokens: list[int]  # the chosen tokens, one per step (a stopped step has none)
    stopped: str  # max_new_tokens | eos | nonfinite


@torch.no_grad()
def inspect_generation(model: CausalLM, ids: list[int], sampling: Sampling, *,
                       generator: torch.Generator | None = None,
                       eos_id: int | None = None) -> Generation:
    """Generate up to `sampling.max_new_tokens` tokens after `ids`, measuring each step.

    Stops early at `eos_id` (recorded as the last step, as `generate` stops) or at the
    first step whose next-token logits hold a NaN/Inf (nothing can be sampled from them;
    the step is recorded without a token). Runs in eval mode and restores the mode.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        idx = torch.tensor([ids], dtype=torch.long, device=device)
        cache = model.new_cache()
        recent: deque[torch.Tensor] = deque(maxlen=sampling.loop_period)  # final states
        steps: list[dict[str, torch.Tensor]] = []
        tokens: list[int] = []
        prompt: dict[str, torch.Tensor] = {}
        stopped = "max_new_tokens"
        for s in range(sampling.max_new_tokens):
            window = cache_window(idx, cache)  # resets a full cache, as generate does
            first = cache.pos
            out = model.transformer.inspect(window, attn=sampling.attention, cache=cache)
            # the same expression as CausalLM.forward, so sampling sees identical logits
            logits = model.logits(out.x[:, [-1], :])[:, -1, :]  # (1, V)
            if s == 0:
                prompt = reduce_prompt(model, out, window)
            logp = log_probs(logits[0])  # (V,): once, for the report and the surprisal
            step = reduce_pass(out, logits, first, sampling.report_top, logp=logp)
            final = out.x[0, -1].float()  # (C,)
            step["lag_distance"] = _lag_distance(final, recent)
            recent.appendleft(final)
            del out  # the hidden states and attention weights of this pass
            steps.append(step)
            # this is a CPU-GPU sync point (once per step, as generate's EOS check)
            if int(step["logits_nonfinite"]):
                stopped = "nonfinite"
                break
            nxt = sample_next(logits, sampling.temperature, sampling.top_k, generator)
            tok = int(nxt)
            step["surprisal_bits"] = -logp[tok] / LN2
            tokens.append(tok)
            idx = torch.cat((idx, nxt), dim=1)
            if eos_id is not None and tok == eos_id:
                stopped = "eos"
                break
    finally:
        model.train(was_training)
    return Generation(ids=list(ids), prompt=prompt, steps=steps, tokens=tokens,
                      stopped=stopped)


def _lag_distance(final: torch.Tensor, recent: deque[torch.Tensor]) -> torch.Tensor:
    """||h_s - h_{s-p}|| / ||h_s|| for p = 1 .. len(recent) (newest first)."""
    if not recent:
        return torch.zeros(0, device=final.device)
    back = torch.stack(list(recent))  # (P, C)
    return l2(final, back) / norm(final)


def reduce_pass(out: TrunkOutput, logits: torch.Tensor, first_query: int,
                report_top: int, logp: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """One pass's numbers, at its last position (the one that predicts the next token).

    `out` is `GPT.inspect` of a window whose first position is `first_query` in the
    cache; `logits` (1, V) the model's next-token logits there, `logp` their log-softmax
    (V,) when the caller has it already. Every value is a small tensor on the model's
    device; nothing of (T, C) or (T, T) size is kept.
    """
    hidden = torch.stack([h[0, -1] for h in out.hidden])  # (L + 1, C): emb, h0, ...
    l2 = norm(hidden)
    bad = torch.stack([(~torch.isfinite(h)).sum() for h in out.hidden])  # (L + 1,)
    if logp is None:
        logp = log_probs(logits[0])  # (V,)
    top_lp, top_id = logp.topk(min(report_top, logp.size(-1)))
    entropy = entropy_bits(logp)
    step = {
        "entropy_bits": entropy,
        "entropy_share": entropy / math.log2(logp.size(-1)),  # of the uniform's log2 V bits
        "top_prob": top_lp.exp(),
        "top_id": top_id,
        "logits_nonfinite": (~torch.isfinite(logits)).sum(),
        "emb_l2": l2[0],
        "l2": l2[1:],
        "block_cos": cosine(hidden[:-1], hidden[1:]),  # (L,): each block's input vs output
        "emb_nonfinite": bad[0],
        "nonfinite": bad[1:],
    }
    if out.attn is not None:
        rows = torch.stack([a[0, :, -1] for a in out.attn])  # (L, nh, K): the last query
        last = first_query + out.hidden[0].size(1) - 1  # its position in the cache
        step["head_entropy"] = attention_entropy(rows.unsqueeze(-2), last).squeeze(-1)
        step["head_max"] = rows.float().max(dim=-1).values
        step["head_sink"] = rows[..., 0].float()
    return step


def reduce_prompt(model: CausalLM, out: TrunkOutput, window: torch.Tensor
                  ) -> dict[str, torch.Tensor]:
    """The prompt pass's own analysis: each prompt token's surprisal, and per block the
    mean cosine between its input and output over the prompt's positions.

    Position 0 (the EOS that starts a document) is left out of the means: it is the
    attention sink and carries outsized norms in most models.
    """
    ids = window[0]  # (T,)
    logits = model.logits(out.x[:, :-1])[0]  # (T - 1, V): predictions of tokens 1 .. T-1
    logp = log_probs(logits)
    surprisal = -logp.gather(-1, ids[1:, None])[:, 0] / LN2  # (T - 1,)
    h = torch.stack([x[0, 1:] for x in out.hidden])  # (L + 1, T - 1, C)
    block_cos = cosine(h[:-1], h[1:]).mean(dim=-1)  # (L,); NaN for a one-token input
    l2 = norm(h).mean(dim=-1)  # (L + 1,)
    return {"surprisal_bits": surprisal, "block_cos": block_cos, "l2": l2}


def to_report(gen: Generation, token_text: Callable[[int], str],
              nf: NonFinite) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The report's `prompt` and `steps`: plain data, every float through finite_or_none.

    The step tensors are moved to the CPU once per quantity and step, after generation.
    """
    p = gen.prompt
    prompt = {
        "tokens": [{"id": i, "token": token_text(i)} for i in gen.ids],
        "surprisal_bits": finite_or_none(p["surprisal_bits"], "prompt.surprisal_bits", nf),
        "block_cos": finite_or_none(p["block_cos"], "prompt.block_cos", nf),
        "l2": finite_or_none(p["l2"], "prompt.l2", nf),
    }
    steps = []
    for s, t in enumerate(gen.steps):
        where = f"steps[{s}]"

        def num(key: str, t: dict[str, torch.Tensor] = t, where: str = where) -> Any:
            return finite_or_none(t[key], f"{where}.{key}", nf)
        token = gen.tokens[s] if s < len(gen.tokens) else None
        top_p = num("top_prob")
        step: dict[str, Any] = {
            "step": s,
            "token": {"id": token, "token": token_text(token)} if token is not None else None,
            "entropy_bits": num("entropy_bits"),
            "entropy_share": num("entropy_share"),
            "surprisal_bits": num("surprisal_bits") if "surprisal_bits" in t else None,
            "top": [{"id": i, "token": token_text(i), "prob": pr}
                    for i, pr in zip(t["top_id"].tolist(), top_p, strict=True)],
            "emb_l2": num("emb_l2"),
            "l2": num("l2"),
            "block_cos": num("block_cos"),
            "emb_nonfinite": int(t["emb_nonfinite"]),
            "nonfinite": [int(n) for n in t["nonfinite"].tolist()],
            "logits_nonfinite": int(t["logits_nonfinite"]),
            "lag_distance": num("lag_distance"),
            "heads": None,
        }
        if "head_entropy" in t:
            step["heads"] = {"entropy": num("head_entropy"), "max_weight": num("head_max"),
                             "sink": num("head_sink")}
        steps.append(step)
    return prompt, steps
