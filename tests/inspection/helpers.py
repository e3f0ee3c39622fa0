"""Tiny models and inputs shared by the lens tests."""

from __future__ import annotations

import torch

from llmkit.inspect.lens import LensInput
from llmkit.models import CausalLM, GPTConfig

V, C, N_LAYER = 12, 16, 3


def tiny_lm(seed: int = 0) -> CausalLM:
    torch.manual_seed(seed)
    model = CausalLM(GPTConfig(vocab_size=V, n_layer=N_LAYER, n_head=2, n_embd=C,
                               block_size=16))
    return model.eval()


def token_text(i: int) -> str:
    return f"t{i}"


def inp(ids: list[int], target: int | None = None, foil: int | None = None,
        name: str = "prompt") -> LensInput:
    return LensInput(name=name, text=" ".join(map(str, ids)), ids=tuple(ids),
                     prompt_ids=tuple(ids), target=target, foil=foil)
