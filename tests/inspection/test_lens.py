"""The logit lens: per-layer numbers come from each layer's own state, runs are isolated."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.nn import functional as F

from llmkit.inspect.lens import (
    LensSettings,
    copy_collapse,
    first_positive,
    first_top1_layer,
    layer_stats,
    lens_logits,
    lens_run,
)
from llmkit.inspect.numerics import entropy_bits, log_probs
from llmkit.inspect.report import dumps, loads_strict
from llmkit.inspect.tuned import TunedLens
from llmkit.models import CausalLM
from tests.inspection.helpers import N_LAYER, C, V, inp, tiny_lm, token_text

# --- the planted model ------------------------------------------------------------------


def planted_lm() -> CausalLM:
    """Layer i's residual stream points at token i (hooks), the unembedding is one-hot."""
    model = tiny_lm()
    with torch.no_grad():
        model.transformer.wte.weight.copy_(torch.eye(V, C))  # token v scores coordinate v

    def plant(j: int) -> Callable:
        def hook(module, args, out):
            x = torch.zeros_like(out)
            x[..., j] = 10.0  # after LayerNorm, coordinate j stands out: top-1 is token j
            return x
        return hook

    model.transformer.drop.register_forward_hook(plant(0))  # layer 0: the embeddings
    for i, block in enumerate(model.transformer.h):
        block.register_forward_hook(plant(i + 1))  # layer i + 1: after block i
    return model


def lens_top1(model: CausalLM, idx: torch.Tensor) -> list[int]:
    """What llmkit's lens says is top-1 at each layer (last position)."""
    hidden = model.transformer.inspect(idx).hidden
    return [int(logits[0, -1].argmax()) for logits in lens_logits(model, hidden)]


def buggy_top1(model: CausalLM, idx: torch.Tensor) -> list[int]:
    """The field bug: the unembedding dedented out of the per-layer loop."""
    hidden = model.transformer.inspect(idx).hidden
    tops = []
    for h in hidden:
        normed = model.transformer.ln_f(h)
    logits = model.logits(normed)  # applied once, to whatever the loop left behind
    for _ in hidden:
        tops.append(int(logits[0, -1].argmax()))
    return tops


def check_planted(top1: Callable[[CausalLM, torch.Tensor], list[int]]) -> None:
    model = planted_lm()
    idx = torch.tensor([[5, 6, 7]])
    tops = top1(model, idx)
    assert tops == list(range(N_LAYER + 1)), tops


def test_planted_model_lens_reports_token_i_at_layer_i():
    check_planted(lens_top1)
    report = lens_run(planted_lm(), inp([5, 6, 7]), LensSettings(), "logit", token_text)
    assert [layer["positions"][0]["top"][0]["id"] for layer in report["layers"]] == \
        list(range(N_LAYER + 1))


def test_planted_check_fails_for_an_unembedding_outside_the_loop():
    with pytest.raises(AssertionError):
        check_planted(buggy_top1)


# --- each layer is its own ln_f + unembedding ------------------------------------------


def test_last_layer_is_the_models_own_logits_and_each_layer_is_independent():
    model = tiny_lm(1)
    idx = torch.tensor([[1, 4, 2, 9, 3]])
    with torch.no_grad():
        own, _ = model(idx, all_logits=True)
        hidden = model.transformer.inspect(idx).hidden
        layers = list(lens_logits(model, hidden))
        assert len(layers) == N_LAYER + 1
        assert torch.equal(layers[-1], own)
        ln = model.transformer.ln_f
        for i, h in enumerate(hidden):
            # computed here without llmkit's loop: LayerNorm by hand, tied head, real vocab
            mu = h.mean(-1, keepdim=True)
            var = h.var(-1, keepdim=True, unbiased=False)
            normed = (h - mu) / torch.sqrt(var + ln.eps) * ln.weight
            expected = (normed @ model.transformer.wte.weight.T)[..., :V]
            torch.testing.assert_close(layers[i], expected, rtol=1e-5, atol=1e-5)


def test_normalising_with_the_final_layers_statistics_gives_other_numbers():
    model = tiny_lm(2)
    with torch.no_grad():
        for block in model.transformer.h:  # the stream grows with depth, as in trained models
            block.mlp.c_proj.weight.mul_(30.0)
            block.attn.c_proj.weight.mul_(30.0)
    idx = torch.tensor([[1, 4, 2, 9, 3]])
    with torch.no_grad():
        hidden = model.transformer.inspect(idx).hidden
        layers = list(lens_logits(model, hidden))
        last = hidden[-1]
        mu, var = last.mean(-1, keepdim=True), last.var(-1, keepdim=True, unbiased=False)
        ln = model.transformer.ln_f
        for i in range(N_LAYER):  # every layer before the last
            cached = (hidden[i] - mu) / torch.sqrt(var + ln.eps) * ln.weight
            wrong = model.logits(cached)
            assert not torch.allclose(wrong, layers[i], atol=1e-3)
        # the field symptom: divided by the final layer's (larger) scale, the embedding
        # layer's distribution looks flatter than it is
        ent_own = entropy_bits(log_probs(layers[0]))
        ent_cached = entropy_bits(log_probs(model.logits(
            (hidden[0] - mu) / torch.sqrt(var + ln.eps) * ln.weight)))
        uniform = math.log2(V)
        assert ((uniform - ent_cached) < 0.5 * (uniform - ent_own)).all(), (ent_cached, ent_own)


def test_layer_stats_kl_is_zero_at_the_last_layer_and_ce_matches_the_model_loss():
    model = tiny_lm(3)
    x = torch.randint(3, V, (2, 8))
    y = torch.randint(3, V, (2, 8))
    stats = layer_stats(model, x, y)
    assert stats["kl_bits"].shape == (N_LAYER + 1,)
    assert stats["kl_bits"][-1].item() == 0.0
    assert stats["top1_agree"][-1].item() == 1.0
    assert (stats["kl_bits"][:-1] > 0).all()
    _, loss = model(x, y)
    assert stats["ce_bits"][-1].item() == pytest.approx(loss.item() / 0.6931471805599453,
                                                        rel=1e-5)


# --- runs ---------------------------------------------------------------------------------


def test_a_run_reports_every_layer_and_position_with_targets():
    model = tiny_lm(4)
    report = lens_run(model, inp([3, 4, 5, 6], target=7), LensSettings(positions="all",
                                                                        top_k=3),
                      "logit", token_text)
    assert [layer["layer"] for layer in report["layers"]] == list(range(N_LAYER + 1))
    for layer in report["layers"]:
        rows = layer["positions"]
        assert [r["position"] for r in rows] == [0, 1, 2, 3]
        assert all(len(r["top"]) == 3 for r in rows)
        # the target of a position is the next prompt token; after the last, --target
        with torch.no_grad():
            logits = list(lens_logits(model, model.transformer.inspect(
                torch.tensor([[3, 4, 5, 6]])).hidden))[layer["layer"]][0]
        for r, tgt in zip(rows, [4, 5, 6, 7], strict=True):
            p = F.softmax(logits[r["position"]], -1)
            assert r["target_prob"] == pytest.approx(p[tgt].item(), rel=1e-5)
            assert r["target_rank"] == int((p > p[tgt]).sum())
    assert report["layers"][-1]["positions"][-1]["kl_bits"] == 0.0
    assert report["nonfinite"] == []


def test_nan_weights_give_null_entries_never_zero_bits():
    model = tiny_lm(5)
    with torch.no_grad():
        model.transformer.h[1].mlp.c_proj.weight[0, 0] = float("nan")
    report = lens_run(model, inp([3, 4, 5], target=6), LensSettings(), "logit", token_text)
    layers = report["layers"]
    assert layers[0]["positions"][0]["entropy_bits"] is not None  # before the NaN
    assert layers[1]["positions"][0]["entropy_bits"] is not None
    for layer in layers[2:]:  # after block 1 every state is NaN
        row = layer["positions"][0]
        assert row["entropy_bits"] is None and row["kl_bits"] is None
        assert row["target_rank"] is None and row["target_prob"] is None
    places = {e["where"] for e in report["nonfinite"]}
    # each place is the path of the null in the report
    assert {"layers[2].positions[0].entropy_bits", "layers[3].positions[0].kl_bits",
            "layers[3].positions[0].top[0].prob",
            "layers[3].positions[0].target_prob"} <= places
    assert "layers[0].positions[0].kl_bits" in places  # KL against a NaN final layer
    assert "layers[0].positions[0].entropy_bits" not in places
    # the run is plain strict JSON: nulls where the NaNs were
    back = loads_strict(dumps({"runs": [report]}))
    assert back["runs"][0]["layers"][3]["positions"][0]["entropy_bits"] is None


def test_copy_collapse_needs_a_window_of_confident_copying_layers():
    s = LensSettings(copy_prob=0.5, copy_margin=0.2, copy_window=2)
    prompt = [5, 6]
    assert copy_collapse([5, 5, 9], [0.9, 0.8, 0.9], [0.1, 0.1, 0.0], prompt, s) == \
        {"first_layer": 0, "layers": [0, 1], "token_id": 5}
    # one layer alone is not a window; a small margin or a low probability does not copy
    assert copy_collapse([5, 9, 6], [0.9, 0.9, 0.9], [0.0, 0.0, 0.0], prompt, s) is None
    assert copy_collapse([5, 5], [0.9, 0.6], [0.1, 0.5], prompt, s) is None
    assert copy_collapse([5, 5], [0.9, 0.4], [0.0, 0.0], prompt, s) is None
    assert copy_collapse([5, 5], [0.9, None], [0.0, 0.0], prompt, s) is None
    assert copy_collapse([9, 6, 6], [0.9, 0.9, 0.9], [0.0, 0.0, 0.0], prompt, s) == \
        {"first_layer": 1, "layers": [1, 2], "token_id": 6}
    loose = LensSettings(copy_prob=0.3, copy_margin=0.05, copy_window=1)
    assert copy_collapse([5, 5], [0.9, 0.4], [0.0, 0.3], prompt, loose)["first_layer"] == 0


def test_first_layer_helpers():
    assert first_top1_layer([3, None, 0, 0]) == 2
    assert first_top1_layer([1, 2]) is None
    assert first_positive([-1.0, None, 0.0, 0.5]) == 3
    assert first_positive([None, -2.0]) is None


def test_control_margin_is_target_minus_foil_in_bits():
    model = tiny_lm(6)
    report = lens_run(model, inp([3, 4], target=7, foil=8, name="control"), LensSettings(),
                      "logit", token_text)
    margins = report["summary"]["control_margin_bits"]
    assert len(margins) == N_LAYER + 1
    with torch.no_grad():
        hidden = model.transformer.inspect(torch.tensor([[3, 4]])).hidden
        for m, logits in zip(margins, lens_logits(model, hidden), strict=True):
            lp = F.log_softmax(logits[0, -1], -1)
            assert m == pytest.approx(((lp[7] - lp[8]) / 0.6931471805599453).item(),
                                      abs=1e-5)
    assert report["summary"]["first_positive_margin_layer"] == first_positive(margins)


# --- isolation ------------------------------------------------------------------------------

PROMPTS = [[3, 4, 5], [5, 4, 3, 3], [7], [9, 9, 9, 9, 2]]
_MODEL = tiny_lm(7)
torch.manual_seed(8)
_TUNED = TunedLens(N_LAYER, C)
with torch.no_grad():
    for p in _TUNED.parameters():
        p.normal_(0, 0.3)  # a non-trivial tuned lens, so the two lenses differ
_TUNED.eval()
SPECS = [(prompt, lens, pos) for prompt in range(len(PROMPTS)) for lens in ("logit", "tuned")
         for pos in ("last", "all")]


def compute(spec: tuple[int, str, str]) -> dict:
    prompt, lens, positions = spec
    ids = PROMPTS[prompt]
    return lens_run(_MODEL, inp(ids, target=6, foil=2 if prompt == 1 else None,
                                name=f"v{prompt}"),
                    LensSettings(positions=positions, copy_prob=0.05, copy_margin=0.0,
                                 copy_window=1),
                    lens, token_text, _TUNED if lens == "tuned" else None)


@functools.cache
def reference() -> dict:
    """Each spec computed once, in SPECS order. Computed inside the test (not at import),
    so that it runs under the same torch thread settings as the runs it is compared with:
    a different thread count changes float reductions in the last bits."""
    return {spec: compute(spec) for spec in SPECS}


@settings(max_examples=25, deadline=None)
@given(st.lists(st.sampled_from(SPECS), min_size=1, max_size=8), st.randoms())
def test_a_runs_result_does_not_depend_on_what_was_computed_before(order, rnd):
    assert reference()[SPECS[0]] != reference()[SPECS[2]]  # the lenses really differ
    order = list(order)
    rnd.shuffle(order)
    for spec in order:
        assert compute(spec) == reference()[spec]
