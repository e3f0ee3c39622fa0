"""Tests of the GPT trunk, the causal LM, and the parameter/optimizer helpers."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from torch.nn import functional as F

from llmkit.models import GPT, CausalLM, GPTConfig, configure_optimizer_groups, param_counts


def tiny(**kw) -> GPTConfig:
    base = dict(vocab_size=50, n_layer=2, n_head=2, n_embd=16, block_size=12)
    base.update(kw)
    return GPTConfig(**base)


def ids(cfg: GPTConfig, B: int = 2, T: int = 8, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, cfg.vocab_size, (B, T), generator=g)


# --- config ---------------------------------------------------------------------------


def test_config_padded_vocab_size():
    assert tiny(vocab_size=65).padded_vocab_size == 65
    assert tiny(vocab_size=65, pad_vocab_multiple=64).padded_vocab_size == 128
    assert tiny(vocab_size=64, pad_vocab_multiple=64).padded_vocab_size == 64


def test_config_rejects_bad_values_and_names_them_all():
    with pytest.raises(ValueError, match=r"n_embd \(16\) must be divisible by n_head \(3\)"):
        tiny(n_head=3)
    with pytest.raises(ValueError, match="vocab_size.*0.*n_layer.*-1"):
        tiny(vocab_size=0, n_layer=-1)
    with pytest.raises(ValueError, match="dropout"):
        tiny(dropout=1.0)


def test_config_vocab_size_is_required():
    with pytest.raises(TypeError):
        GPTConfig(n_layer=2, n_head=2, n_embd=16, block_size=8)  # type: ignore[call-arg]


# --- trunk ----------------------------------------------------------------------------


def test_trunk_shapes_and_module_names():
    cfg = tiny()
    model = GPT(cfg)
    x = model(ids(cfg))
    assert x.shape == (2, 8, 16)
    names = dict(model.named_modules())
    assert "h.1" in names and "h.2" not in names  # per-layer hooks can name blocks


def test_too_long_input_names_both_numbers():
    cfg = tiny(block_size=8)
    with pytest.raises(ValueError, match=r"length 9 .*block_size 8"):
        GPT(cfg)(ids(cfg, T=9))


def test_inspect_gives_every_layer_and_ends_at_the_output():
    cfg = tiny()
    model = GPT(cfg).eval()
    idx = ids(cfg)
    x, hidden, attn = model.inspect(idx)
    assert attn is None  # only when asked for
    assert len(hidden) == cfg.n_layer + 1
    assert all(h.shape == (2, 8, 16) for h in hidden)
    torch.testing.assert_close(model.ln_f(hidden[-1]), x)
    torch.testing.assert_close(model(idx), x)  # the default path computes the same thing
    # the first one is the embedding output, before any block
    pos = torch.arange(8)
    torch.testing.assert_close(hidden[0], model.wte(idx) + model.wpe(pos))


@pytest.mark.parametrize("causal", [True, False])
def test_inspect_attn_matches_the_fast_path(causal):
    cfg = tiny(causal=causal)
    model = GPT(cfg).eval()
    idx = ids(cfg)
    mask = torch.ones_like(idx, dtype=torch.bool)
    mask[1, 5:] = False
    x, _, attn = model.inspect(idx, mask=mask, attn=True)
    torch.testing.assert_close(x, model(idx, mask=mask), atol=1e-5, rtol=1e-5)
    assert len(attn) == cfg.n_layer and attn[0].shape == (2, cfg.n_head, 8, 8)
    torch.testing.assert_close(attn[0].sum(-1), torch.ones(2, cfg.n_head, 8))
    assert (attn[0][1, :, :, 5:] == 0).all()  # padding keys get no attention
    if causal:
        assert (attn[0].triu(diagonal=1) == 0).all()  # nothing from the future
    x2, hidden, attn2 = model.inspect(idx, attn=True)
    assert len(hidden) == cfg.n_layer + 1 and len(attn2) == cfg.n_layer


@pytest.mark.parametrize("causal", [True, False])
def test_changing_a_future_token_changes_earlier_outputs_only_when_bidirectional(causal):
    cfg = tiny(causal=causal)
    model = GPT(cfg).eval()
    idx = ids(cfg, B=1)
    idx2 = idx.clone()
    idx2[0, 6] = (idx[0, 6] + 1) % cfg.vocab_size
    a, b = model(idx), model(idx2)
    earlier_same = torch.allclose(a[:, :6], b[:, :6], atol=1e-6)
    assert earlier_same == causal
    assert not torch.allclose(a[:, 6], b[:, 6])


def test_key_padding_mask_hides_padding_from_real_tokens():
    cfg = tiny(causal=False)
    model = GPT(cfg).eval()
    idx = ids(cfg, B=1)
    mask = torch.tensor([[True] * 5 + [False] * 3])
    idx2 = idx.clone()
    idx2[0, 5:] = (idx[0, 5:] + 1) % cfg.vocab_size  # change only padding
    torch.testing.assert_close(model(idx, mask)[:, :5], model(idx2, mask)[:, :5])
    # and a padded example matches the same example without padding
    torch.testing.assert_close(model(idx, mask)[:, :5], model(idx[:, :5]), atol=1e-5, rtol=1e-5)


def test_mask_must_be_bool_with_the_input_shape():
    cfg = tiny(causal=False)
    model = GPT(cfg)
    idx = ids(cfg)
    with pytest.raises(ValueError, match="bool"):
        model(idx, torch.ones_like(idx))
    with pytest.raises(ValueError, match="shape"):
        model(idx, torch.ones(2, 7, dtype=torch.bool))


def test_init_scales_residual_projections_and_zeroes_biases():
    cfg = tiny(n_layer=8, n_embd=64, bias=True)
    model = GPT(cfg)
    std = model.h[0].mlp.c_proj.weight.std().item()
    assert std == pytest.approx(0.02 / math.sqrt(16), rel=0.1)
    assert model.h[0].mlp.c_fc.weight.std().item() == pytest.approx(0.02, rel=0.1)
    assert (model.h[0].attn.c_attn.bias == 0).all()


# --- causal LM ------------------------------------------------------------------------


def test_lm_head_is_tied_to_the_token_embedding():
    model = CausalLM(tiny())
    assert model.lm_head.weight is model.transformer.wte.weight


def test_causal_lm_refuses_a_bidirectional_trunk():
    with pytest.raises(ValueError, match="causal"):
        CausalLM(tiny(causal=False))


def test_logit_shapes_with_and_without_targets():
    cfg = tiny(vocab_size=50, pad_vocab_multiple=64)
    model = CausalLM(cfg)
    idx = ids(cfg)
    logits, loss = model(idx)
    assert logits.shape == (2, 1, 50) and loss is None
    logits, _ = model(idx, all_logits=True)
    assert logits.shape == (2, 8, 50)
    logits, loss = model(idx, targets=idx)
    assert logits.shape == (2, 8, 50) and loss.ndim == 0


def test_last_position_logits_match_the_full_logits():
    cfg = tiny()
    model = CausalLM(cfg).eval()
    idx = ids(cfg)
    last, _ = model(idx)
    full, _ = model(idx, all_logits=True)
    torch.testing.assert_close(last[:, 0], full[:, -1])


def test_changing_a_future_token_does_not_change_earlier_logits():
    cfg = tiny()
    model = CausalLM(cfg).eval()
    idx = ids(cfg, B=1)
    idx2 = idx.clone()
    idx2[0, 5] = (idx[0, 5] + 1) % cfg.vocab_size
    a, _ = model(idx, all_logits=True)
    b, _ = model(idx2, all_logits=True)
    torch.testing.assert_close(a[:, :5], b[:, :5])
    assert not torch.allclose(a[:, 5:], b[:, 5:])


def test_ignore_index_skips_targets():
    cfg = tiny()
    model = CausalLM(cfg).eval()
    idx = ids(cfg)
    targets = ids(cfg, seed=1)
    logits, loss = model(idx, targets=targets)
    skipped = targets.clone()
    skipped[:, :4] = -100
    _, loss_skipped = model(idx, targets=skipped)
    expected = F.cross_entropy(logits[:, 4:].reshape(-1, 50), targets[:, 4:].reshape(-1))
    torch.testing.assert_close(loss_skipped, expected)
    assert not torch.allclose(loss, loss_skipped)


def test_padded_vocab_gives_the_same_loss_as_the_unpadded_model():
    cfg = tiny(vocab_size=50)
    plain = CausalLM(cfg).eval()
    padded = CausalLM(replace(cfg, pad_vocab_multiple=64)).eval()
    state = plain.state_dict()
    with torch.no_grad():
        for name, p in padded.named_parameters():
            if name == "transformer.wte.weight":
                assert p.shape == (64, 16)
                p[:50].copy_(state[name])
                p[50:].normal_(0, 10.0)  # loud padding rows must not matter
            else:
                p.copy_(state[name])
    idx, targets = ids(cfg), ids(cfg, seed=1)
    _, loss_plain = plain(idx, targets=targets)
    _, loss_padded = padded(idx, targets=targets)
    torch.testing.assert_close(loss_padded, loss_plain)
    _, smooth_plain = plain(idx, targets=targets, label_smoothing=0.1)
    _, smooth_padded = padded(idx, targets=targets, label_smoothing=0.1)
    torch.testing.assert_close(smooth_padded, smooth_plain)


def test_generate_never_samples_a_padding_id():
    cfg = tiny(vocab_size=5, pad_vocab_multiple=64)
    model = CausalLM(cfg)
    with torch.no_grad():
        model.transformer.wte.weight[5:].normal_(0, 10.0)  # padding rows would win samples
    g = torch.Generator().manual_seed(0)
    out = model.generate(torch.zeros(8, 1, dtype=torch.long), 20, generator=g)
    assert out.shape == (8, 21)
    assert out.max().item() < 5
    greedy = model.generate(torch.zeros(2, 1, dtype=torch.long), 5, temperature=0)
    assert greedy.max().item() < 5


def test_generate_is_reproducible_with_a_generator_and_crops_long_contexts():
    cfg = tiny(block_size=6)
    model = CausalLM(cfg)
    model.train()
    prompt = ids(cfg, B=2, T=10)  # longer than block_size: cropped, not an error
    a = model.generate(prompt, 8, top_k=5, generator=torch.Generator().manual_seed(3))
    b = model.generate(prompt, 8, top_k=5, generator=torch.Generator().manual_seed(3))
    assert a.shape == (2, 18)
    assert torch.equal(a, b) and torch.equal(a[:, :10], prompt)
    assert model.training  # the mode is restored


def test_generate_greedy_and_top_k_one_agree_with_argmax():
    cfg = tiny()
    model = CausalLM(cfg).eval()
    prompt = ids(cfg, B=2, T=3)
    greedy = model.generate(prompt, 4, temperature=0)
    top1 = model.generate(prompt, 4, top_k=1, generator=torch.Generator().manual_seed(0))
    assert torch.equal(greedy, top1)
    logits, _ = model(prompt)
    assert torch.equal(greedy[:, 3], logits[:, -1].argmax(-1))


def test_generate_stops_at_eos_and_pads_finished_rows():
    cfg = tiny(vocab_size=3)
    model = CausalLM(cfg).eval()
    prompt = torch.zeros(1, 1, dtype=torch.long)
    greedy = model.generate(prompt, 10, temperature=0)
    eos = greedy[0, 1].item()  # whatever greedy picks first is used as "eos"
    out = model.generate(prompt, 10, temperature=0, eos_id=eos)
    assert out.shape == (1, 2)
    out = model.generate(
        torch.zeros(4, 1, dtype=torch.long), 30, eos_id=2,
        generator=torch.Generator().manual_seed(0),
    )
    assert any(2 in row for row in out.tolist())  # 30 draws from 3 tokens
    for row in out.tolist():
        if 2 in row:
            first = row.index(2)
            assert all(t == 2 for t in row[first:])


def test_generate_rejects_bad_arguments():
    model = CausalLM(tiny())
    prompt = torch.zeros(1, 1, dtype=torch.long)
    with pytest.raises(ValueError, match="temperature"):
        model.generate(prompt, 1, temperature=-1)
    with pytest.raises(ValueError, match="top_k"):
        model.generate(prompt, 1, top_k=0)


@pytest.mark.parametrize("vocab_size", [65, 512, 8000])
def test_initial_loss_is_close_to_log_vocab_size(vocab_size):
    cfg = GPTConfig(vocab_size=vocab_size, n_layer=2, n_head=2, n_embd=32, block_size=32)
    torch.manual_seed(0)
    model = CausalLM(cfg)
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, vocab_size, (4, 32), generator=g)
    y = torch.randint(0, vocab_size, (4, 32), generator=g)
    with torch.no_grad():
        _, loss = model(x, targets=y)
    assert loss.item() == pytest.approx(math.log(vocab_size), rel=0.10)


def test_training_step_reduces_loss():
    cfg = tiny(dropout=0.1)
    torch.manual_seed(0)
    model = CausalLM(cfg)
    opt = torch.optim.AdamW(configure_optimizer_groups(model, 0.1), lr=1e-2)
    idx = ids(cfg, B=4, T=12)
    x, y = idx[:, :-1], idx[:, 1:]
    first = None
    for _ in range(20):
        _, loss = model(x, targets=y)
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first * 0.8


# --- helpers --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kw", [{}, {"bias": True}, {"pad_vocab_multiple": 64}, {"n_layer": 3, "block_size": 20}]
)
def test_param_counts_match_a_real_model(kw):
    cfg = tiny(**kw)
    model = CausalLM(cfg)
    total, non_embedding = param_counts(cfg)
    assert total == sum(p.numel() for p in model.parameters())
    wte, wpe = model.transformer.wte.weight, model.transformer.wpe.weight
    assert non_embedding == total - wte.numel() - wpe.numel()


def test_param_counts_cost_nothing_for_a_large_config():
    cfg = GPTConfig(vocab_size=50257, n_layer=48, n_head=25, n_embd=1600, block_size=1024)
    total, non_embedding = param_counts(cfg)
    assert 1.5e9 < total < 1.6e9  # GPT-2 XL
    assert non_embedding < total


def test_optimizer_groups_cover_every_parameter_once():
    for model in (CausalLM(tiny(bias=True)), CausalLM(tiny())):
        groups = configure_optimizer_groups(model, weight_decay=0.1)
        seen = [id(p) for g in groups for p in g["params"]]
        assert len(seen) == len(set(seen))
        assert set(seen) == {id(p) for p in model.parameters()}
        decay, no_decay = groups
        assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
        assert all(p.dim() >= 2 for p in decay["params"])
        no_decay_ids = {id(p) for p in no_decay["params"]}
        assert id(model.transformer.wte.weight) in no_decay_ids  # tied head: embedding
        assert id(model.transformer.wpe.weight) in no_decay_ids
        assert id(model.transformer.h[0].ln_1.weight) in no_decay_ids
        torch.optim.AdamW(groups, lr=1e-3)  # AdamW accepts them as they are
