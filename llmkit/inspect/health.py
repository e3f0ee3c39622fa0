"""Health flags of a generation: pure decisions over its reduced per-step series.

`inspect_generation` measures; the functions here decide, from plain numbers (the report's
own `steps`, where a non-finite value is already None), which findings to raise. Each
finding says what was seen, where (layer and step), the numbers that raised it and what
to do next, so a flag can be checked by hand against the report.

The rules avoid the mistakes of an earlier field tool:

- Repetition needs *both* repeated token n-grams *and* near-identical final states at the
  repeat's lag. Last-layer states are anisotropic (unrelated tokens reach a cosine of
  0.99+), so state similarity alone flags ordinary text; the distance threshold is
  relative (||h_s - h_{s-p}|| / ||h_s||) and calibratable on the model's own data.
- The mid-layer L2 check compares a layer with the early layers *of the same step*; the
  prompt pass (many positions) and single-token steps are never pooled into one baseline.
- Heads collapsed at the first step are a property of the model (attention sinks), not a
  runtime event: reported as `info`. Only heads that collapse *while generating* warn.
- The entropy threshold is a share of log2 V, so it means the same for 65 and 50k tokens.
- A NaN is never read as 0 bits: it is None here, raises `nonfinite`, and counts for no
  other flag.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

Step = dict[str, Any]  # one entry of the report's `steps`


@dataclass(frozen=True)
class Thresholds:
    """The thresholds of the health flags (CLI flags; `--calibrate` derives the first
    three from validation data)."""

    entropy_share: float = 0.75  # high entropy: >= this share of log2 V bits
    l2_ratio: float = 20.0  # mid-layer anomaly: a layer's L2 / the early layers' largest
    loop_distance: float = 0.05  # near-identical final states: relative distance <= this
    collapse_entropy: float = 0.1  # a head row is collapsed below this normalised entropy
    loop_tokens: int = 8  # a loop covers at least this many generated tokens
    loop_period: int = 4  # longest repeated n-gram looked for (tokens)

    def __post_init__(self) -> None:
        problems = []
        for name in ("entropy_share", "collapse_entropy"):
            if not 0.0 < getattr(self, name) <= 1.0:
                problems.append(f"{name} must be in (0, 1], got {getattr(self, name)}")
        if not self.l2_ratio > 1.0:
            problems.append(f"l2_ratio must be > 1, got {self.l2_ratio}")
        if not self.loop_distance > 0.0:
            problems.append(f"loop_distance must be > 0, got {self.loop_distance}")
        if self.loop_period < 1:
            problems.append(f"loop_period must be >= 1, got {self.loop_period}")
        if self.loop_tokens < 2:
            problems.append(f"loop_tokens must be >= 2, got {self.loop_tokens}")
        if problems:
            raise ValueError("; ".join(problems))

    @staticmethod
    def names() -> list[str]:
        return [f.name for f in fields(Thresholds)]


@dataclass(frozen=True)
class Finding:
    """One health flag: a structured finding, printed and written in one place."""

    code: str  # nonfinite | attention_collapse | attention_collapse_trend | high_entropy |
    # repetition_loop | mid_layer_l2
    severity: str  # error | warning | info
    message: str
    where: dict[str, Any]  # step and layer (and head) where it was first seen
    numbers: dict[str, Any]  # the values that raised it
    suggestion: str
    steps: list[int] = field(default_factory=list)  # every step it concerns

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# Flags a planted fault raises; the other two describe the model rather than a fault.
FAULT_CODES = ("nonfinite", "mid_layer_l2", "repetition_loop", "attention_collapse_trend")


def layer_label(layer: int | None) -> str:
    """`emb` for the embedding, `h{i}` for block i's output, `head` for the logits."""
    return {None: "head", -1: "emb"}.get(layer, f"h{layer}")


def assess(steps: Sequence[Step], th: Thresholds, *, n_layer: int,
           vocab_size: int) -> list[Finding]:
    """Every health flag of a generation, in a fixed order (faults first)."""
    found = [nonfinite(steps), mid_layer_l2(steps, th, n_layer=n_layer),
             repetition_loop(steps, th), collapse_trend(steps, th),
             high_entropy(steps, th, vocab_size=vocab_size), collapse_structural(steps, th)]
    return [f for f in found if f is not None]


def nonfinite(steps: Sequence[Step]) -> Finding | None:
    """The first step and layer (embedding, blocks in order, then the logits) with a NaN
    or Inf. Counts are over every position a pass computed (the prompt pass: all of it)."""
    first = None
    hit_steps = []
    for s in steps:
        layers = [(-1, s["emb_nonfinite"])] + list(enumerate(s["nonfinite"]))
        layers.append((None, s["logits_nonfinite"]))
        bad = [(layer, n) for layer, n in layers if n]
        if bad:
            hit_steps.append(s["step"])
            if first is None:
                first = (s["step"], bad)
    if first is None:
        return None
    step, bad = first
    layer, count = bad[0]
    return Finding(
        code="nonfinite", severity="error",
        message=(f"NaN/Inf first at step {step}, layer {layer_label(layer)} ({count} values); "
                 f"{len(hit_steps)} step(s) affected"),
        where={"step": step, "layer": layer, "name": layer_label(layer)},
        numbers={"count": count, "layers": [layer_label(x) for x, _ in bad],
                 "steps_affected": len(hit_steps)},
        suggestion=("look at the weights and inputs of that block (a forward hook on "
                    "transformer.h[i] shows its output); generation stops at the first "
                    "non-finite next-token distribution"),
        steps=hit_steps)


def early_and_checked(n_layer: int) -> tuple[int, range]:
    """How many blocks form the early baseline (with the embedding), and which blocks
    are checked: the middle ones, after the early ones and before the last."""
    early = max(1, n_layer // 4)
    return early, range(early, n_layer - 1)


def mid_layer_l2(steps: Sequence[Step], th: Thresholds, *, n_layer: int) -> Finding | None:
    """A middle layer whose residual L2 norm exceeds `l2_ratio` times the largest norm of
    the early layers (embedding and first quarter of blocks) *of the same step*.

    Fewer than three blocks leave no middle layer to check. Values that are None
    (non-finite) never count here: `nonfinite` reports them.
    """
    early, checked = early_and_checked(n_layer)
    first = None
    hit_steps = []
    for s in steps:
        base_values = [s["emb_l2"], *s["l2"][:early]]
        if any(v is None or v <= 0 for v in base_values):
            continue
        base = max(base_values)
        over = [(i, s["l2"][i] / base) for i in checked
                if s["l2"][i] is not None and s["l2"][i] / base >= th.l2_ratio]
        if over:
            hit_steps.append(s["step"])
            if first is None:
                first = (s, base, over)
    if first is None:
        return None
    s, base, over = first
    layer, ratio = over[0]
    return Finding(
        code="mid_layer_l2", severity="warning",
        message=(f"layer {layer_label(layer)} residual L2 {s['l2'][layer]:.4g} is "
                 f"{ratio:.1f}x the early layers' {base:.4g} at step {s['step']} "
                 f"(threshold {th.l2_ratio:g}x); {len(hit_steps)} step(s) affected"),
        where={"step": s["step"], "layer": layer, "name": layer_label(layer)},
        numbers={"l2": s["l2"][layer], "early_l2": base, "ratio": ratio,
                 "threshold": th.l2_ratio, "layers": [layer_label(i) for i, _ in over],
                 "steps_affected": len(hit_steps)},
        suggestion=("a block that blows up its residual: check its weights (norms of "
                    "c_proj/c_fc) and whether training diverged near this checkpoint"),
        steps=hit_steps)


def loop_stretches(tokens: Sequence[int | None], lag_distance: Sequence[Sequence[float | None]],
                   th: Thresholds) -> list[tuple[int, int, int]]:
    """(period, first step, last step) of each stretch where the tokens repeat with that
    period *and* each state lies within `loop_distance` of the state one period back.

    A stretch qualifies when it covers at least `loop_tokens` tokens and two full copies
    of the n-gram (the first copy plus at least one period of repeats). A stretch that a
    shorter period (a divisor) already covers is left out.
    """
    out = []
    for p in range(1, th.loop_period + 1):
        run_start = None
        for s in range(len(tokens) + 1):
            ok = (s < len(tokens) and s >= p and tokens[s] is not None
                  and tokens[s] == tokens[s - p] and len(lag_distance[s]) >= p
                  and lag_distance[s][p - 1] is not None
                  and lag_distance[s][p - 1] <= th.loop_distance)
            if ok and run_start is None:
                run_start = s
            elif not ok and run_start is not None:
                repeats = s - run_start
                if repeats >= p and repeats + p >= th.loop_tokens:
                    out.append((p, run_start - p, s - 1))
                run_start = None
    # a loop of period 2 also repeats with period 4: keep the shortest n-gram
    out = [(p, a, b) for p, a, b in out
           if not any(q < p and p % q == 0 and a2 <= a and b2 >= b for q, a2, b2 in out)]
    return sorted(out, key=lambda x: (x[1], x[0]))


def repetition_loop(steps: Sequence[Step], th: Thresholds) -> Finding | None:
    """The first repetition loop (see `loop_stretches`)."""
    tokens = [s["token"]["id"] if s["token"] is not None else None for s in steps]
    stretches = loop_stretches(tokens, [s["lag_distance"] for s in steps], th)
    if not stretches:
        return None
    p, start, end = stretches[0]
    dists = [steps[s]["lag_distance"][p - 1] for s in range(start + p, end + 1)]
    gram = "".join(steps[s]["token"]["token"] for s in range(start, start + p))
    return Finding(
        code="repetition_loop", severity="warning",
        message=(f"the model repeats {gram!r} (period {p}) from step {start} to {end} with "
                 f"near-identical final states (relative distance <= {max(dists):.3g})"),
        where={"step": start, "layer": None, "name": "final"},
        numbers={"period": p, "first_step": start, "last_step": end,
                 "tokens": end - start + 1, "max_distance": max(dists),
                 "threshold": th.loop_distance, "ngram": gram,
                 "loops": len(stretches)},
        suggestion=("sample with a temperature > 0 or a larger top-k; a model that loops "
                    "on greedy decoding is often undertrained"),
        steps=list(range(start, end + 1)))


def high_entropy(steps: Sequence[Step], th: Thresholds, *, vocab_size: int) -> Finding | None:
    """Steps whose next-token entropy is at least `entropy_share` of log2 V bits."""
    limit = th.entropy_share * math.log2(vocab_size)
    hits = [s for s in steps if s["entropy_bits"] is not None and s["entropy_bits"] >= limit]
    if not hits:
        return None
    worst = max(hits, key=lambda s: s["entropy_bits"])
    return Finding(
        code="high_entropy", severity="warning",
        message=(f"{len(hits)} of {len(steps)} steps have entropy >= {limit:.2f} bits "
                 f"({th.entropy_share:g} of log2 V = {math.log2(vocab_size):.2f}); the "
                 f"highest is {worst['entropy_bits']:.2f} bits at step {worst['step']}"),
        where={"step": hits[0]["step"], "layer": None, "name": "head"},
        numbers={"count": len(hits), "of": len(steps), "threshold_bits": limit,
                 "max_bits": worst["entropy_bits"], "max_step": worst["step"]},
        suggestion=("the model is unsure here; an untrained or undertrained model is unsure "
                    "everywhere (compare val/bits_per_token in TensorBoard)"),
        steps=[s["step"] for s in hits])


def _collapsed(step: Step, th: Thresholds) -> set[tuple[int, int]]:
    heads = step["heads"]
    if heads is None:
        return set()
    return {(layer, h) for layer, row in enumerate(heads["entropy"])
            for h, e in enumerate(row) if e is not None and e < th.collapse_entropy}


def collapsed_counts(step: Step, th: Thresholds) -> list[int] | None:
    """Collapsed heads per layer at one step (None without attention telemetry)."""
    if step["heads"] is None:
        return None
    return [sum(1 for e in row if e is not None and e < th.collapse_entropy)
            for row in step["heads"]["entropy"]]


def collapse_structural(steps: Sequence[Step], th: Thresholds) -> Finding | None:
    """Heads collapsed from the first step: a property of the model, reported as info."""
    if not steps or steps[0]["heads"] is None:
        return None
    first = sorted(_collapsed(steps[0], th))
    if not first:
        return None
    stays = sorted(set(first).intersection(*(_collapsed(s, th) for s in steps)))
    h0 = steps[0]["heads"]
    heads = [{"layer": layer, "head": h, "entropy": h0["entropy"][layer][h],
              "max_weight": h0["max_weight"][layer][h], "sink": h0["sink"][layer][h]}
             for layer, h in first]
    return Finding(
        code="attention_collapse", severity="info",
        message=(f"{len(first)} head(s) collapsed from the first step (normalised entropy "
                 f"< {th.collapse_entropy:g}), {len(stays)} of them at every step: a "
                 f"structural property of this model (e.g. attention sinks), not an event"),
        where={"step": steps[0]["step"], "layer": first[0][0],
               "name": layer_label(first[0][0]), "head": first[0][1]},
        numbers={"heads": heads, "collapsed_throughout": len(stays)},
        suggestion="nothing to do at inference; compare with earlier checkpoints if curious",
        steps=[steps[0]["step"]])


def collapse_trend(steps: Sequence[Step], th: Thresholds) -> Finding | None:
    """Heads that collapse while generating: not collapsed at the first step, collapsed
    at no more than half of the first half of the steps, and at 90% or more of the second
    half (at least 8 steps). A head that narrows now and then (a previous-token head on
    the right character) is neither: it has the same rate in both halves.
    """
    if len(steps) < 8 or steps[0]["heads"] is None:
        return None
    half = len(steps) // 2
    sets = [_collapsed(s, th) for s in steps]
    heads = set().union(*sets[half:]) - sets[0]

    def rate(hd: tuple[int, int], part: list[set[tuple[int, int]]]) -> float:
        return sum(hd in c for c in part) / len(part)
    grown = sorted(hd for hd in heads
                   if rate(hd, sets[:half]) <= 0.5 and rate(hd, sets[half:]) >= 0.9)
    if not grown:
        return None
    became = {}
    for hd in grown:  # the first step of the final collapsed run
        s = len(steps) - 1
        while s > 0 and hd in sets[s - 1]:
            s -= 1
        became[hd] = steps[s]["step"]
    first_hd = min(grown, key=lambda hd: (became[hd], hd))
    return Finding(
        code="attention_collapse_trend", severity="warning",
        message=(f"{len(grown)} head(s) collapsed while generating (not at the start), "
                 f"first layer {layer_label(first_hd[0])} head {first_hd[1]} from step "
                 f"{became[first_hd]}"),
        where={"step": became[first_hd], "layer": first_hd[0],
               "name": layer_label(first_hd[0]), "head": first_hd[1]},
        numbers={"heads": [{"layer": layer, "head": h, "from_step": became[(layer, h)],
                            "rate_first_half": rate((layer, h), sets[:half]),
                            "rate_second_half": rate((layer, h), sets[half:])}
                           for layer, h in grown],
                 "collapsed_per_layer_first": collapsed_counts(steps[0], th),
                 "collapsed_per_layer_last": collapsed_counts(steps[-1], th)},
        suggestion=("attention narrowing onto few tokens as the text grows; often comes "
                    "with a repetition loop or a context past what training saw"),
        steps=sorted({became[hd] for hd in grown}))
