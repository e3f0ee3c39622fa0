"""Health flags as pure decisions over plain per-step numbers (no model needed)."""

from __future__ import annotations

import math

import pytest

from llmkit.inspect.health import (
    Thresholds,
    assess,
    collapse_structural,
    collapse_trend,
    high_entropy,
    loop_stretches,
    mid_layer_l2,
    nonfinite,
    repetition_loop,
)

N_LAYER = 4


def step(s: int, *, token: int = 5, entropy: float | None = 1.0, l2=None, emb_l2=1.0,
         lag=None, heads=None, bad=None) -> dict:
    return {"step": s, "token": {"id": token, "token": chr(97 + token % 26)},
            "entropy_bits": entropy, "entropy_share": None if entropy is None else entropy / 6,
            "surprisal_bits": 1.0, "top": [], "emb_l2": emb_l2,
            "l2": l2 if l2 is not None else [1.5, 2.0, 2.5, 3.0],
            "block_cos": [0.9] * N_LAYER, "emb_nonfinite": 0,
            "nonfinite": bad if bad is not None else [0] * N_LAYER, "logits_nonfinite": 0,
            "lag_distance": lag if lag is not None else [0.5] * min(s, 4), "heads": heads}


def test_thresholds_are_checked():
    with pytest.raises(ValueError, match="entropy_share must be in"):
        Thresholds(entropy_share=1.5)
    with pytest.raises(ValueError, match="l2_ratio must be > 1"):
        Thresholds(l2_ratio=0.5)


def test_nonfinite_names_the_first_step_and_layer():
    steps = [step(0), step(1, bad=[0, 0, 3, 3], entropy=None), step(2, bad=[0, 9, 9, 9])]
    f = nonfinite(steps)
    assert f.where == {"step": 1, "layer": 2, "name": "h2"}
    assert f.numbers["count"] == 3 and f.steps == [1, 2] and f.severity == "error"
    assert nonfinite([step(0), step(1)]) is None


def test_a_none_entropy_is_not_high_nor_low_entropy():
    th = Thresholds(entropy_share=0.5)
    assert high_entropy([step(0, entropy=None)], th, vocab_size=64) is None  # NaN != 0 bits
    assert high_entropy([step(0, entropy=2.9)], th, vocab_size=64) is None
    assert high_entropy([step(0, entropy=3.0)], th, vocab_size=64).steps == [0]


def test_the_entropy_threshold_scales_with_the_vocabulary():
    th = Thresholds(entropy_share=0.75)
    steps = [step(0, entropy=5.0)]  # 5 bits: near-uniform over 65 tokens, sure over 50k
    assert high_entropy(steps, th, vocab_size=65) is not None
    assert high_entropy(steps, th, vocab_size=50_000) is None
    assert high_entropy(steps, th, vocab_size=65).numbers["threshold_bits"] == pytest.approx(
        0.75 * math.log2(65))


def test_mid_layer_l2_compares_with_the_early_layers_of_the_same_step():
    th = Thresholds(l2_ratio=10.0)
    # the prompt step has big norms everywhere (many positions, a sink): no alarm, because
    # its own early layers are big too; a later single-token step is judged on its own
    steps = [step(0, emb_l2=80.0, l2=[90.0, 95.0, 99.0, 120.0]),
             step(1, l2=[1.5, 2.0, 2.5, 3.0]), step(2, l2=[1.5, 30.0, 31.0, 35.0])]
    f = mid_layer_l2(steps, th, n_layer=N_LAYER)
    assert f.where == {"step": 2, "layer": 1, "name": "h1"} and f.steps == [2]
    assert f.numbers["ratio"] == pytest.approx(30.0 / 1.5)
    # the last layer is not a middle layer; two blocks leave none to check
    assert mid_layer_l2([step(0, l2=[1.5, 2.0, 2.5, 300.0])], th, n_layer=N_LAYER) is None
    assert mid_layer_l2([step(0, l2=[1.0, 50.0])], th, n_layer=2) is None
    # a None (non-finite) norm is the nonfinite flag's business
    assert mid_layer_l2([step(0, l2=[1.5, None, None, None])], th, n_layer=N_LAYER) is None


def test_a_loop_needs_repeated_ngrams_and_near_identical_states():
    th = Thresholds(loop_distance=0.05, loop_tokens=8, loop_period=4)
    toks = [1, 2, 3] + [7, 8] * 6  # period 2 from step 3
    near = [[0.5, 0.01, 0.5, 0.01] for _ in toks]
    far = [[0.5, 0.2, 0.5, 0.2] for _ in toks]
    assert loop_stretches(toks, near, th) == [(2, 3, 14)]
    assert loop_stretches(toks, far, th) == []  # the same tokens, unrelated states
    assert loop_stretches(list(range(15)), near, th) == []  # close states, no repeats
    # too short: 6 tokens of period 2 < loop_tokens
    assert loop_stretches([1, 2, 3, 4, 5, 6, 7, 8, 9] + [7, 8] * 3, near, th) == []
    # anisotropic states (cosine 0.999, distance ~0.045) without repeats: nothing
    steps = [step(s, token=s, lag=[0.045] * min(s, 4)) for s in range(20)]
    assert repetition_loop(steps, th) is None
    steps = [step(s, token=4, lag=[0.0] * min(s, 4)) for s in range(10)]
    f = repetition_loop(steps, th)
    assert f.numbers["period"] == 1 and f.where["step"] == 0 and f.steps == list(range(10))


def heads(entropies: list[list[float]]) -> dict:
    return {"entropy": entropies, "max_weight": entropies, "sink": entropies}


def test_heads_collapsed_from_the_start_are_structural_info():
    th = Thresholds(collapse_entropy=0.1)
    steps = [step(s, heads=heads([[0.02, 0.8], [0.9, 0.9]])) for s in range(10)]
    f = collapse_structural(steps, th)
    assert f.severity == "info" and f.numbers["collapsed_throughout"] == 1
    assert f.where["layer"] == 0 and f.where["head"] == 0
    assert collapse_trend(steps, th) is None


def test_collapse_that_grows_while_generating_warns():
    th = Thresholds(collapse_entropy=0.1)
    steps = [step(s, heads=heads([[0.8, 0.8], [0.9, 0.9 if s < 6 else 0.05]]))
             for s in range(12)]
    f = collapse_trend(steps, th)
    assert f.where == {"step": 6, "layer": 1, "name": "h1", "head": 1}
    assert f.numbers["collapsed_per_layer_first"] == [0, 0]
    assert f.numbers["collapsed_per_layer_last"] == [0, 1]
    # a head that narrows now and then (same rate in both halves) is no trend
    flicker = [step(s, heads=heads([[0.8, 0.05 if s % 2 else 0.8], [0.9, 0.9]]))
               for s in range(12)]
    assert collapse_trend(flicker, th) is None


def test_assess_orders_faults_first():
    steps = [step(s, token=4, entropy=5.9, lag=[0.0] * min(s, 4),
                  bad=[0, 1, 0, 0] if s == 3 else None) for s in range(10)]
    found = [f.code for f in assess(steps, Thresholds(), n_layer=N_LAYER, vocab_size=64)]
    assert found == ["nonfinite", "repetition_loop", "high_entropy"]
