"""Architecture options, each checked against an independent computation: rotary
embeddings of known vectors, RMSNorm and SwiGLU by hand, QK-norm, an untied head; and
every preset starts at a cross-entropy close to ln V."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from llmkit.config import PRESETS
from llmkit.models import CausalLM, GPTConfig, SpanModel, configure_optimizer_groups
from llmkit.models.gpt import ROPE_THETA, RMSNorm, apply_rotary, rotary_tables
from llmkit.sizing import preset_gpt


def cfg(**kw) -> GPTConfig:
    base = {"vocab_size": 37, "n_layer": 2, "n_head": 2, "n_embd": 16, "block_size": 12}
    base.update(kw)
    return GPTConfig(**base)


def test_rotary_turns_each_channel_pair_by_position_times_its_frequency():
    hs, pos = 8, 3
    cos, sin = rotary_tables(hs, n_pos=5)
    # channel pair (i, i + hs/2) of position p turns by p * theta^(-2i/hs)
    x = torch.zeros(1, 1, 5, hs)
    x[0, 0, pos, 1] = 1.0  # unit vector on channel 1, which pairs with channel 5
    y = apply_rotary(x, cos, sin)[0, 0, pos]
    angle = pos * ROPE_THETA ** (-2 * 1 / hs)
    want = torch.zeros(hs)
    want[1], want[5] = math.cos(angle), math.sin(angle)
    torch.testing.assert_close(y, want, atol=1e-6, rtol=0)
    # position 0 is not rotated, and a rotation keeps the length
    v = torch.randn(1, 2, 5, hs)
    r = apply_rotary(v, cos, sin)
    torch.testing.assert_close(r[:, :, 0], v[:, :, 0])
    torch.testing.assert_close(r.norm(dim=-1), v.norm(dim=-1))


def test_rotary_scores_depend_only_on_the_distance():
    hs = 8
    cos, sin = rotary_tables(hs, n_pos=12)
    q, k = torch.randn(hs), torch.randn(hs)
    seq_q = q.expand(1, 1, 12, hs)
    seq_k = k.expand(1, 1, 12, hs)
    rq, rk = apply_rotary(seq_q, cos, sin)[0, 0], apply_rotary(seq_k, cos, sin)[0, 0]
    # q at position 7 with k at 4, and q at 5 with k at 2: both 3 apart
    assert float(rq[7] @ rk[4]) == pytest.approx(float(rq[5] @ rk[2]), rel=1e-5)


def test_rms_norm_by_hand():
    norm = RMSNorm(4, eps=1e-6)
    with torch.no_grad():
        norm.weight.copy_(torch.tensor([1.0, 2.0, 0.5, -1.0]))
    x = torch.tensor([[3.0, -4.0, 0.0, 5.0]])
    rms = math.sqrt((9 + 16 + 0 + 25) / 4 + 1e-6)
    want = torch.tensor([[3 / rms * 1, -4 / rms * 2, 0.0, 5 / rms * -1]])
    torch.testing.assert_close(norm(x), want)
    # bf16 input is normalised in float32 (as Llama does), so only the input is rounded
    torch.testing.assert_close(norm(x.bfloat16()), want, atol=0.02, rtol=0.01)


def test_swiglu_block_mlp_by_hand():
    model = CausalLM(cfg(arch="llama"))
    mlp = model.transformer.h[0].mlp
    x = torch.randn(2, 3, 16)
    want = (F.silu(x @ mlp.c_gate.weight.t()) * (x @ mlp.c_fc.weight.t())) @ mlp.c_proj.weight.t()
    torch.testing.assert_close(mlp(x), want)
    assert mlp.c_fc.weight.shape == (64, 16)  # 8/3 x 16 = 42.7, rounded up to 64


def test_llama_attention_by_hand():
    """One block's attention computed without the module: rotary q and k, causal softmax."""
    c = cfg(arch="qwen3")
    torch.manual_seed(0)
    model = CausalLM(c)
    attn = model.transformer.h[0].attn
    with torch.no_grad():  # make QK-norm weights non-trivial so that a skipped norm shows
        attn.q_norm.weight.uniform_(0.5, 1.5)
        attn.k_norm.weight.uniform_(0.5, 1.5)
    B, T, C, nh, hs = 2, 5, 16, 2, 8
    x = torch.randn(B, T, C)
    cos, sin = rotary_tables(hs, T)
    q, k, v = (x @ attn.c_attn.weight.t()).split(C, dim=-1)

    def heads(t):
        return t.view(B, T, nh, hs)

    def rms(t, w):
        return t / torch.sqrt(t.pow(2).mean(-1, keepdim=True) + 1e-6) * w

    q = rms(heads(q), attn.q_norm.weight).transpose(1, 2)
    k = rms(heads(k), attn.k_norm.weight).transpose(1, 2)
    v = heads(v).transpose(1, 2)

    def rot(t):  # rotate half: (a, b) -> (a cos - b sin, b cos + a sin) per channel pair
        a, b = t[..., : hs // 2], t[..., hs // 2 :]
        c_, s_ = cos[:, : hs // 2], sin[:, : hs // 2]
        return torch.cat((a * c_ - b * s_, b * c_ + a * s_), dim=-1)

    att = (rot(q) @ rot(k).transpose(-2, -1)) / math.sqrt(hs)
    att = att.masked_fill(~torch.ones(T, T, dtype=torch.bool).tril(), float("-inf"))
    y = (att.softmax(-1) @ v).transpose(1, 2).reshape(B, T, C) @ attn.c_proj.weight.t()
    got = attn(x, rotary=(cos, sin))
    torch.testing.assert_close(got, y, atol=1e-5, rtol=1e-5)


def test_rotary_models_have_no_position_table_and_run_on_any_length():
    model = CausalLM(cfg(arch="llama"))
    assert model.transformer.wpe is None
    assert "transformer.wpe.weight" not in model.state_dict()
    assert not any("rope" in k for k in model.state_dict())  # computed, not saved
    logits, _ = model(torch.randint(0, 37, (2, 7)), all_logits=True)
    assert logits.shape == (2, 7, 37)


def test_causal_rotary_model_does_not_see_the_future():
    model = CausalLM(cfg(arch="qwen3")).eval()
    idx = torch.randint(0, 37, (1, 10))
    changed = idx.clone()
    changed[0, 6:] = (changed[0, 6:] + 1) % 37
    a, _ = model(idx, all_logits=True)
    b, _ = model(changed, all_logits=True)
    torch.testing.assert_close(a[:, :6], b[:, :6])
    assert not torch.allclose(a[:, 6:], b[:, 6:])


def test_untied_head_has_its_own_matrix():
    tied, untied = CausalLM(cfg(tie_embeddings=True)), CausalLM(cfg(tie_embeddings=False))
    assert tied.lm_head.weight is tied.transformer.wte.weight
    assert untied.lm_head.weight is not untied.transformer.wte.weight
    n = sum(p.numel() for p in untied.parameters()) - sum(p.numel() for p in tied.parameters())
    assert n == 37 * 16


@pytest.mark.parametrize("arch", ["gpt2", "llama", "qwen3"])
def test_span_model_runs_every_arch(arch):
    model = SpanModel(cfg(arch=arch, causal=False))
    mask = torch.ones(2, 6, dtype=torch.bool)
    mask[1, 4:] = False
    start, end = model(torch.randint(0, 37, (2, 6)), mask)
    assert start.shape == end.shape == (2, 6)
    assert torch.isfinite(start[0]).all()


def test_llama_refuses_biases():
    with pytest.raises(ValueError, match="has no biases"):
        cfg(arch="llama", bias=True)
    with pytest.raises(ValueError, match="arch must be one of"):
        cfg(arch="mamba")


def test_muon_groups_are_the_blocks_matrices_only():
    model = CausalLM(cfg(arch="qwen3", tie_embeddings=False))
    groups = configure_optimizer_groups(model, weight_decay=0.1)
    hidden = [p for g in groups if g["hidden"] for p in g["params"]]
    names = {id(p): n for n, p in model.named_parameters()}
    assert all(p.dim() == 2 and names[id(p)].startswith("transformer.h.") for p in hidden)
    # 4 matrices in attention and the 3 of SwiGLU, per block
    assert len(hidden) == 2 * 5
    others = {names[id(p)] for g in groups if not g["hidden"] for p in g["params"]}
    assert {"lm_head.weight", "transformer.wte.weight", "transformer.ln_f.weight",
            "transformer.h.0.attn.q_norm.weight"} <= others


@pytest.mark.parametrize("preset", list(PRESETS))
def test_presets_start_near_uniform_cross_entropy(preset):
    """At initialisation a model should be unsure: cross-entropy within 10% of ln V."""
    V = 512
    gpt = preset_gpt(preset, V)
    if gpt.n_layer > 6:  # base would take long on 2 cores: same architecture, fewer layers
        gpt = GPTConfig(**{**gpt.__dict__, "n_layer": 2, "block_size": 64})
    torch.manual_seed(0)
    model = CausalLM(gpt)
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, V, (2, min(gpt.block_size, 64)), generator=g)
    y = torch.randint(0, V, x.shape, generator=g)
    with torch.no_grad():
        _, loss = model(x, y)
    assert float(loss) == pytest.approx(math.log(V), rel=0.10)


@pytest.mark.parametrize("arch", ["llama", "qwen3"])
def test_generation_with_the_cache_equals_without_for_rotary_models(arch):
    model = CausalLM(cfg(arch=arch, block_size=10))
    prompt = torch.randint(0, 37, (2, 3), generator=torch.Generator().manual_seed(0))
    # 14 new tokens: past block_size, so the full cache is refilled once on the way
    cached = model.generate(prompt, 14, temperature=0, use_cache=True)
    plain = model.generate(prompt, 14, temperature=0, use_cache=False)
    assert torch.equal(cached, plain)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(model.generate(prompt, 8, top_k=5, generator=g1, use_cache=True),
                       model.generate(prompt, 8, top_k=5, generator=g2, use_cache=False))
