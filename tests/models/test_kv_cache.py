"""The KV cache: generation with it gives exactly the tokens of generation without it."""

from __future__ import annotations

import pytest
import torch

from llmkit.config import PRESETS
from llmkit.models import CausalLM, GPTConfig, sample_next


def preset_model(name: str, vocab_size: int = 300, block_size: int | None = None) -> CausalLM:
    """A randomly initialised LM with the shape of a size preset (dropout on: eval turns it
    off, so a cache that forgot eval mode would show)."""
    p = PRESETS[name]
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=vocab_size, n_layer=p["n_layer"], n_head=p["n_head"],
                    n_embd=p["n_embd"], block_size=block_size or p["block_size"],
                    dropout=p["dropout"], bias=True)
    model = CausalLM(cfg)
    with torch.no_grad():  # biases are zero at init; make them matter
        for name_, param in model.named_parameters():
            if name_.endswith("bias"):
                param.normal_(0, 0.02)
    return model


@pytest.mark.parametrize("preset", ["tiny", "small"])
def test_cached_generation_equals_uncached_greedy_and_seeded(preset):
    model = preset_model(preset)
    prompt = torch.randint(3, 300, (2, 7), generator=torch.Generator().manual_seed(1))
    n = 24
    greedy_cached = model.generate(prompt, n, temperature=0)
    greedy_plain = model.generate(prompt, n, temperature=0, use_cache=False)
    assert greedy_cached.shape == (2, 7 + n)
    assert torch.equal(greedy_cached, greedy_plain)
    sampled = [model.generate(prompt, n, temperature=1.0, top_k=50, use_cache=cache,
                              generator=torch.Generator().manual_seed(5))
               for cache in (True, False)]
    assert torch.equal(sampled[0], sampled[1])
    # sampling really happened: a different seed gives a different continuation
    other = model.generate(prompt, n, temperature=1.0, top_k=50,
                           generator=torch.Generator().manual_seed(6))
    assert not torch.equal(sampled[0], other)


def test_cached_generation_past_block_size_equals_uncached():
    # The cache fills up after block_size tokens; from then on both paths see the last
    # block_size tokens with positions 0..block_size-1.
    model = preset_model("tiny", block_size=16)
    prompt = torch.randint(3, 300, (3, 10), generator=torch.Generator().manual_seed(2))
    a = model.generate(prompt, 30, temperature=0.9, generator=torch.Generator().manual_seed(0))
    b = model.generate(prompt, 30, temperature=0.9, use_cache=False,
                       generator=torch.Generator().manual_seed(0))
    assert a.shape == (3, 40)
    assert torch.equal(a, b)


def test_cached_forward_gives_the_logits_of_the_full_forward():
    model = preset_model("tiny").eval()
    idx = torch.randint(0, 300, (2, 12), generator=torch.Generator().manual_seed(3))
    full, _ = model(idx, all_logits=True)  # (B, T, V)
    cache = model.new_cache()
    first, _ = model(idx[:, :5], all_logits=True, cache=cache)  # prefill 5 tokens
    steps = [model(idx[:, t : t + 1], cache=cache)[0] for t in range(5, 12)]
    got = torch.cat([first, *steps], dim=1)
    assert cache.pos == 12
    torch.testing.assert_close(got, full, atol=1e-5, rtol=1e-5)
    # a chunk of several tokens after the prompt takes the offset causal mask
    cache = model.new_cache()
    model(idx[:, :4], cache=cache)
    chunk, _ = model(idx[:, 4:9], all_logits=True, cache=cache)
    torch.testing.assert_close(chunk, full[:, 4:9], atol=1e-5, rtol=1e-5)


def test_cache_refuses_more_than_block_size_tokens_and_padding_masks():
    model = preset_model("tiny", block_size=8).eval()
    cache = model.new_cache()
    model(torch.zeros(1, 6, dtype=torch.long), cache=cache)
    with pytest.raises(ValueError, match="block_size 8"):
        model(torch.zeros(1, 3, dtype=torch.long), cache=cache)
    with pytest.raises(ValueError, match="padding mask"):
        model.transformer(torch.zeros(1, 2, dtype=torch.long),
                          torch.ones(1, 2, dtype=torch.bool), model.new_cache())


def test_sample_next_greedy_top_k_and_seed():
    logits = torch.tensor([[0.0, 3.0, 1.0, 2.0], [5.0, 0.0, 0.0, 0.0]])
    assert sample_next(logits, 0).tolist() == [[1], [0]]
    # top_k=1 leaves only the argmax, whatever the seed
    for seed in range(5):
        g = torch.Generator().manual_seed(seed)
        assert sample_next(logits, 1.0, top_k=1, generator=g).tolist() == [[1], [0]]
    # top_k=2 never picks outside the two likeliest
    g = torch.Generator().manual_seed(0)
    draws = {sample_next(logits[:1], 5.0, top_k=2, generator=g).item() for _ in range(200)}
    assert draws == {1, 3}
    a = sample_next(logits, 1.0, generator=torch.Generator().manual_seed(9))
    b = sample_next(logits, 1.0, generator=torch.Generator().manual_seed(9))
    assert torch.equal(a, b)
