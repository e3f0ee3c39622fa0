"""Which `transformers` architecture is exactly an llmkit model, and how its weights map.

One entry per architecture. Each says, for every option of `GPTConfig`, whether it can
express that value exactly (`options`: field -> None if fine, else the reason it cannot),
writes `config.json`, and renames/reshapes the weights. `choose` takes the first entry that
expresses every option; an option that no entry knows, or a value no entry can express, is
refused with the reasons: an exported model is llmkit's model exactly or not at all.

Today llmkit's GPT is GPT-2 (pre-norm LayerNorm, learned positions, tied head, exact
GELU, 4x MLP). Architecture options added later (RoPE, RMSNorm, a gated MLP, QK-norm)
add entries here (Llama, Qwen3) instead of stretching GPT-2.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields

import torch

from llmkit.errors import LlmkitError
from llmkit.models.gpt import GPTConfig
from llmkit.tokenizer import EOS_ID, PAD_ID

OptionCheck = Callable[[object], str | None]  # the option's value -> None, or why not


class UnsupportedArchitecture(LlmkitError):
    """No `transformers` architecture computes exactly what this model computes."""


@dataclass(frozen=True)
class Architecture:
    """How one `transformers` architecture expresses llmkit models."""

    model_type: str  # config.json "model_type"
    hf_class: str  # the class `AutoModelForCausalLM` builds
    options: dict[str, OptionCheck]  # every GPTConfig field -> check
    config: Callable[[GPTConfig], dict]  # config.json entries (without the generic ones)
    tensors: Callable[[dict[str, torch.Tensor], GPTConfig], dict[str, torch.Tensor]]

    def problems(self, gpt: GPTConfig) -> list[str]:
        """Why this architecture cannot express `gpt` (empty: it can, exactly)."""
        out = []
        for f in fields(gpt):
            check = self.options.get(f.name)
            value = getattr(gpt, f.name)
            if check is None:
                out.append(f"model option {f.name}={value!r} is unknown to the "
                           f"{self.model_type} mapping")
            elif (reason := check(value)) is not None:
                out.append(f"{f.name}={value!r}: {reason}")
        return out


def _any(_: object) -> None:
    return None


def _causal_only(value: object) -> str | None:
    return None if value is True else "a bidirectional trunk has no causal-LM counterpart"


def _gpt2_config(gpt: GPTConfig) -> dict:
    return {
        "model_type": "gpt2",
        "architectures": ["GPT2LMHeadModel"],
        "vocab_size": gpt.vocab_size,  # the real rows only; padding rows are not written
        "n_positions": gpt.block_size,
        "n_ctx": gpt.block_size,
        "n_embd": gpt.n_embd,
        "n_layer": gpt.n_layer,
        "n_head": gpt.n_head,
        "n_inner": 4 * gpt.n_embd,
        # GPT-2's default is "gelu_new", the tanh approximation; llmkit's nn.GELU() is the
        # exact erf form, which transformers calls "gelu".
        "activation_function": "gelu",
        "layer_norm_epsilon": 1e-5,  # nn.LayerNorm's default
        "resid_pdrop": gpt.dropout,
        "embd_pdrop": gpt.dropout,
        "attn_pdrop": gpt.dropout,
        "scale_attn_weights": True,  # q.k / sqrt(head size), as SDPA does
        "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False,
        "tie_word_embeddings": True,
        "use_cache": True,
        # The LM learned that a document starts after EOS (documents are joined by EOS),
        # so EOS also plays GPT-2's "beginning of text" role.
        "bos_token_id": EOS_ID,
        "eos_token_id": EOS_ID,
        "pad_token_id": PAD_ID,
    }


# Linear layers that GPT-2 stores as Conv1D, whose weight is (in, out): the transpose of
# nn.Linear's (out, in).
_CONV1D = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
_LAYER_NORMS = ("ln_1", "ln_2")


def _gpt2_tensors(sd: dict[str, torch.Tensor], gpt: GPTConfig) -> dict[str, torch.Tensor]:
    """GPT2LMHeadModel's tensors from a `CausalLM` state dict (same names, by design).

    The tied head is written once, as `transformer.wte.weight` (transformers ties
    `lm_head.weight` to it on load). A model trained without biases gets zero biases,
    which compute exactly what no bias computes.
    """
    C = gpt.n_embd
    out: dict[str, torch.Tensor] = {
        "transformer.wte.weight": sd["transformer.wte.weight"][: gpt.vocab_size],
        "transformer.wpe.weight": sd["transformer.wpe.weight"],
    }

    def bias(name: str, size: int) -> torch.Tensor:
        return sd[name] if name in sd else torch.zeros(size)

    for i in range(gpt.n_layer):
        p = f"transformer.h.{i}."
        for ln in _LAYER_NORMS:
            out[p + ln + ".weight"] = sd[p + ln + ".weight"]
            out[p + ln + ".bias"] = bias(p + ln + ".bias", C)
        for layer in _CONV1D:
            weight = sd[p + layer + ".weight"]  # (out, in)
            out[p + layer + ".weight"] = weight.t()  # (in, out)
            out[p + layer + ".bias"] = bias(p + layer + ".bias", weight.size(0))
    out["transformer.ln_f.weight"] = sd["transformer.ln_f.weight"]
    out["transformer.ln_f.bias"] = bias("transformer.ln_f.bias", C)
    # safetensors wants each tensor to own its memory, contiguous, float32 for parity
    return {k: v.detach().to(torch.float32).contiguous().clone() for k, v in out.items()}


GPT2 = Architecture(
    model_type="gpt2",
    hf_class="GPT2LMHeadModel",
    options={
        "vocab_size": _any,
        "n_layer": _any,
        "n_head": _any,
        "n_embd": _any,
        "block_size": _any,  # n_positions
        "dropout": _any,  # training only
        "bias": _any,  # zero biases where llmkit has none
        "causal": _causal_only,
        "pad_vocab_multiple": _any,  # padding rows are cut off
    },
    config=_gpt2_config,
    tensors=_gpt2_tensors,
)

ARCHITECTURES: tuple[Architecture, ...] = (GPT2,)


def choose(gpt: GPTConfig) -> Architecture:
    """The architecture that expresses `gpt` exactly.

    Raises:
        UnsupportedArchitecture: none does; the message lists each one's reasons.
    """
    reasons = []
    for arch in ARCHITECTURES:
        problems = arch.problems(gpt)
        if not problems:
            return arch
        reasons.append(f"{arch.model_type}: " + ", ".join(problems))
    raise UnsupportedArchitecture(
        "this model has no exact transformers counterpart, so it is not exported ("
        + "; ".join(reasons) + "); export never approximates a model")
