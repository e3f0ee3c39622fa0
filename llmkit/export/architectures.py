"""Which `transformers` architecture is exactly an llmkit model, and how its weights map.

One entry per architecture. Each says, for every option of `GPTConfig`, whether it can
express that value exactly (`options`: field -> None if fine, else the reason it cannot),
writes `config.json`, and renames/reshapes the weights. `choose` takes the first entry that
expresses every option; an option that no entry knows, or a value no entry can express, is
refused with the reasons: an exported model is llmkit's model exactly or not at all.

llmkit's `arch` option picks the architecture: `gpt2` (pre-norm LayerNorm, learned
positions, exact GELU, 4x MLP) is GPT-2; `llama` (rotary positions in the rotate-half
layout, RMSNorm computed in float32, SwiGLU) is Llama; `qwen3` (llama + RMSNorm on each
head's queries and keys before the rotation) is Qwen3.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields

import torch

from llmkit.errors import LlmkitError
from llmkit.models.gpt import RMS_NORM_EPS, ROPE_THETA, GPTConfig
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
        "arch": lambda v: None if v == "gpt2" else f"only arch gpt2 is GPT-2, not {v}",
        "tie_embeddings": lambda v: None if v else "an untied GPT-2 head is not mapped",
    },
    config=_gpt2_config,
    tensors=_gpt2_tensors,
)


def _llama_config(gpt: GPTConfig) -> dict:
    hf = "Qwen3ForCausalLM" if gpt.arch == "qwen3" else "LlamaForCausalLM"
    config = {
        "model_type": gpt.arch,
        "architectures": [hf],
        "vocab_size": gpt.vocab_size,  # the real rows only; padding rows are not written
        "hidden_size": gpt.n_embd,
        "intermediate_size": gpt.mlp_hidden,
        "num_hidden_layers": gpt.n_layer,
        "num_attention_heads": gpt.n_head,
        "num_key_value_heads": gpt.n_head,  # no grouped-query attention
        "head_dim": gpt.head_size,
        "hidden_act": "silu",
        "max_position_embeddings": gpt.block_size,
        "rms_norm_eps": RMS_NORM_EPS,
        "rope_theta": ROPE_THETA,
        "rope_parameters": {"rope_type": "default", "rope_theta": ROPE_THETA},
        "attention_bias": False,
        "attention_dropout": gpt.dropout,
        "tie_word_embeddings": gpt.tie_embeddings,
        "use_cache": True,
        "bos_token_id": EOS_ID,  # as for GPT-2: documents start after EOS
        "eos_token_id": EOS_ID,
        "pad_token_id": PAD_ID,
    }
    if gpt.arch == "llama":
        config["mlp_bias"] = False
    else:
        config["use_sliding_window"] = False
    return config


def _llama_tensors(sd: dict[str, torch.Tensor], gpt: GPTConfig) -> dict[str, torch.Tensor]:
    """LlamaForCausalLM / Qwen3ForCausalLM tensors from a `CausalLM` state dict.

    llmkit's fused c_attn (3C, C) is split into q_proj, k_proj and v_proj in that order;
    nn.Linear's (out, in) layout is transformers' too. A tied head is written once, as
    the embedding.
    """
    C = gpt.n_embd
    out: dict[str, torch.Tensor] = {
        "model.embed_tokens.weight": sd["transformer.wte.weight"][: gpt.vocab_size],
        "model.norm.weight": sd["transformer.ln_f.weight"],
    }
    if not gpt.tie_embeddings:
        out["lm_head.weight"] = sd["lm_head.weight"][: gpt.vocab_size]
    for i in range(gpt.n_layer):
        p, q = f"transformer.h.{i}.", f"model.layers.{i}."
        qkv = sd[p + "attn.c_attn.weight"]  # (3C, C): rows of q, then k, then v
        out[q + "self_attn.q_proj.weight"] = qkv[:C]
        out[q + "self_attn.k_proj.weight"] = qkv[C : 2 * C]
        out[q + "self_attn.v_proj.weight"] = qkv[2 * C :]
        out[q + "self_attn.o_proj.weight"] = sd[p + "attn.c_proj.weight"]
        if gpt.qk_norm:
            out[q + "self_attn.q_norm.weight"] = sd[p + "attn.q_norm.weight"]
            out[q + "self_attn.k_norm.weight"] = sd[p + "attn.k_norm.weight"]
        out[q + "mlp.gate_proj.weight"] = sd[p + "mlp.c_gate.weight"]
        out[q + "mlp.up_proj.weight"] = sd[p + "mlp.c_fc.weight"]
        out[q + "mlp.down_proj.weight"] = sd[p + "mlp.c_proj.weight"]
        out[q + "input_layernorm.weight"] = sd[p + "ln_1.weight"]
        out[q + "post_attention_layernorm.weight"] = sd[p + "ln_2.weight"]
    return {k: v.detach().to(torch.float32).contiguous().clone() for k, v in out.items()}


def _rotary_arch(name: str) -> Architecture:
    def arch_check(v: object) -> str | None:
        return None if v == name else f"the {name} mapping is for arch {name}, not {v}"

    return Architecture(
        model_type=name,
        hf_class="Qwen3ForCausalLM" if name == "qwen3" else "LlamaForCausalLM",
        options={
            "vocab_size": _any,
            "n_layer": _any,
            "n_head": _any,
            "n_embd": _any,
            "block_size": _any,  # max_position_embeddings
            "dropout": _any,  # training only
            "bias": lambda v: None if v is False else "no biases in this architecture",
            "causal": _causal_only,
            "pad_vocab_multiple": _any,  # padding rows are cut off
            "arch": arch_check,
            "tie_embeddings": _any,  # tie_word_embeddings
        },
        config=_llama_config,
        tensors=_llama_tensors,
    )


LLAMA = _rotary_arch("llama")
QWEN3 = _rotary_arch("qwen3")

ARCHITECTURES: tuple[Architecture, ...] = (GPT2, LLAMA, QWEN3)


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
