"""The llama and qwen3 mappings: transformers' LlamaForCausalLM / Qwen3ForCausalLM with the
mapped weights computes llmkit's logits (float32, CPU, within 1e-4), tied head or not."""

from __future__ import annotations

import pytest
import torch

from llmkit.export import choose
from llmkit.models import CausalLM, GPTConfig

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()


@pytest.mark.parametrize("arch", ["llama", "qwen3"])
@pytest.mark.parametrize("tie", [True, False])
def test_rotary_models_have_llmkits_logits_in_transformers(arch: str, tie: bool) -> None:
    gpt = GPTConfig(vocab_size=61, n_layer=2, n_head=4, n_embd=32, block_size=16, arch=arch,
                    tie_embeddings=tie, pad_vocab_multiple=8)
    torch.manual_seed(0)
    ours = CausalLM(gpt).eval()
    with torch.no_grad():  # norm weights away from 1, so that a wrong mapping shows
        for p in ours.parameters():
            if p.dim() == 1:
                p.uniform_(0.5, 1.5)
    mapping = choose(gpt)
    assert mapping.model_type == arch
    config = mapping.config(gpt)
    cls = {"llama": transformers.LlamaConfig, "qwen3": transformers.Qwen3Config}[arch]
    model_cls = getattr(transformers, mapping.hf_class)
    theirs = model_cls(cls(**{k: v for k, v in config.items() if k != "model_type"})).eval()
    missing, unexpected = theirs.load_state_dict(mapping.tensors(ours.state_dict(), gpt),
                                                 strict=False)
    assert unexpected == []
    assert set(missing) <= ({"lm_head.weight"} if tie else set())
    if tie:
        theirs.tie_weights()
    g = torch.Generator().manual_seed(1)
    idx = torch.randint(0, 61, (2, 16), generator=g)
    with torch.no_grad():
        want, _ = ours(idx, all_logits=True)
        got = theirs(idx).logits
    assert got.shape == want.shape
    assert (got - want).abs().max().item() <= 1e-4
    assert want.std().item() > 0.05  # not trivially equal


def test_gpt2_mapping_refuses_the_rotary_archs_and_an_untied_head() -> None:
    from llmkit.export import UnsupportedArchitecture
    from llmkit.export.architectures import GPT2

    assert GPT2.problems(GPTConfig(vocab_size=9, n_layer=1, n_head=1, n_embd=4, block_size=4,
                                   arch="qwen3")) != []
    with pytest.raises(UnsupportedArchitecture, match="untied GPT-2 head"):
        choose(GPTConfig(vocab_size=9, n_layer=1, n_head=1, n_embd=4, block_size=4,
                         tie_embeddings=False))
