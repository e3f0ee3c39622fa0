"""A trained model back from its checkpoint without Lightning, and where it runs.

`generate`, `predict`, `eval` and `export` only need the plain `nn.Module` and the
tokenizer, so they read the checkpoint here: no Lightning, no trainer, and a start-up of
about the time it takes to import torch. The checkpoint is checked against the project's
tokenizer and model shape before any weight is loaded (DESIGN.md, problem 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from llmkit.checkpoint import check_compatible, find_checkpoint, load_checkpoint
from llmkit.config import Config
from llmkit.console import Log
from llmkit.errors import CheckpointError, LlmkitError
from llmkit.models.from_config import gpt_config
from llmkit.models.gpt import CausalLM, GPTConfig
from llmkit.models.span import SpanModel
from llmkit.precision import matmul_dtype, resolve_precision
from llmkit.tokenizer import Tokenizer
from llmkit.vocab_sync import sync_vocab

# The LightningModules hold the plain model as `self.model`; their state_dict keys start so.
_MODULE_PREFIX = "model."


@dataclass
class Trained:
    """A checkpoint's model with everything needed to use it."""

    cfg: Config  # the project config (vocabulary synced with the tokenizer)
    tok: Tokenizer  # the tokenizer the checkpoint was trained with (checked by hash)
    model: CausalLM | SpanModel  # on the CPU, float32, in eval mode
    path: Path  # the checkpoint file
    meta: dict[str, Any]  # the checkpoint's `llmkit` entry
    step: int  # optimizer steps the checkpoint was trained for

    @property
    def gpt(self) -> GPTConfig:
        return self.model.config


def build_model(gpt: GPTConfig) -> CausalLM | SpanModel:
    """The plain model for a shape: causal -> `CausalLM`, bidirectional -> `SpanModel`."""
    return CausalLM(gpt) if gpt.causal else SpanModel(gpt)


def load_model(cfg: Config, checkpoint: Path | None = None,
               log: Log = print) -> Trained:
    """The project's tokenizer and the checkpoint's model (default: the best of the latest
    run), in eval mode on the CPU; move it with `.to(device)`.

    Raises:
        LlmkitError: there is no tokenizer yet.
        CheckpointError / VocabMismatchError: no checkpoint, an unreadable one, or one
            trained with another tokenizer, task or model shape (both sides named).
    """
    path = cfg.path(cfg.tokenizer.path)
    if not path.exists():
        raise LlmkitError(f"no tokenizer at {cfg.tokenizer.path}; train first with "
                          f"`llmkit train`")
    tok = Tokenizer.load(path)
    cfg = sync_vocab(cfg, tok, log)
    ckpt_path = find_checkpoint(cfg, checkpoint)
    ckpt = load_checkpoint(ckpt_path)
    if "llmkit" not in ckpt or "state_dict" not in ckpt:
        raise CheckpointError(f"{ckpt_path} is not an llmkit checkpoint (no 'llmkit' entry)")
    gpt = gpt_config(cfg, tok)
    check_compatible(ckpt["llmkit"], cfg, gpt, tok, ckpt_path)
    model = build_model(gpt)
    state = {k.removeprefix(_MODULE_PREFIX): v for k, v in ckpt["state_dict"].items()
             if k.startswith(_MODULE_PREFIX)}
    try:
        model.load_state_dict(state)
    except RuntimeError as e:  # missing or unexpected tensors: not this model's checkpoint
        first = str(e).splitlines()[0]
        raise CheckpointError(f"{ckpt_path}: the weights do not fit the model ({first})"
                              ) from None
    model.eval()
    return Trained(cfg=cfg, tok=tok, model=model, path=ckpt_path, meta=dict(ckpt["llmkit"]),
                   step=int(ckpt.get("global_step", 0)))


def resolve_device(name: str) -> torch.device:
    """`auto`: the GPU when there is one, else the CPU; `cuda` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise LlmkitError("--device cuda: no CUDA GPU is visible to torch; use --device cpu "
                          "or --device auto")
    if name not in ("cpu", "cuda"):
        raise LlmkitError(f"--device {name!r}: expected auto, cpu or cuda")
    return torch.device(name)


def inference_dtype(precision: str, device: torch.device) -> torch.dtype:
    """The compute dtype for inference: bf16 on a GPU where training ran in bf16
    (`training.precision` bf16-*, or auto on a GPU that supports it), else float32.

    The CPU always computes in float32: bf16 matmuls there are slower, not faster.
    """
    if device.type != "cuda":
        return torch.float32
    dtype = matmul_dtype(resolve_precision(precision))
    return dtype if dtype == torch.bfloat16 else torch.float32


def autocast(device: torch.device, dtype: torch.dtype):
    """A context in which the model computes in `dtype` (weights stay float32), as in
    bf16-mixed training; a no-op for float32."""
    return torch.autocast(device_type=device.type, dtype=dtype,
                          enabled=dtype != torch.float32)
