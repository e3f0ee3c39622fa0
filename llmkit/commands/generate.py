"""`llmkit generate`: sample a continuation of a prompt from a language-model checkpoint.

No Lightning and no trainer are imported on this path: the command costs about as much as
importing torch plus the generation itself. The model runs on `--device` (the GPU when
there is one), in bf16 where training ran in bf16, with the KV cache.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import torch

from llmkit.config import Config
from llmkit.console import Log
from llmkit.errors import LlmkitError
from llmkit.inference import autocast, inference_dtype, load_model, resolve_device
from llmkit.tokenizer import EOS_ID, check_token_ids


def generate_text(cfg: Config, prompt: str, *, checkpoint: Path | None = None,
                  max_new_tokens: int = 100, temperature: float = 0.8, top_k: int | None = None,
                  seed: int | None = None, device: str = "auto", use_cache: bool = True,
                  log: Log = print) -> str:
    """The prompt followed by up to `max_new_tokens` sampled tokens, as text.

    The same seed gives the same text on the same device (CPU and GPU draw differently).
    """
    if cfg.project.task != "lm":
        raise LlmkitError("`llmkit generate` needs a language-model project (project.task: "
                          "lm); use `llmkit predict` for span projects")
    if max_new_tokens < 1 or temperature < 0 or (top_k is not None and top_k < 1):
        raise LlmkitError(f"need --max-new-tokens >= 1, --temperature >= 0, --top-k >= 1; got "
                          f"{max_new_tokens}, {temperature}, {top_k}")
    dev = resolve_device(device)
    trained = load_model(cfg, checkpoint, log=log)
    model = trained.model.to(dev)
    # Training text is documents joined by EOS, so EOS is what precedes a document's start.
    ids = [EOS_ID, *trained.tok.encode(prompt)]
    check_token_ids(ids, trained.tok.vocab_size, source=f"prompt {prompt[:40]!r}")
    gen = torch.Generator(device=dev).manual_seed(seed) if seed is not None else None
    idx = torch.tensor([ids], dtype=torch.long, device=dev)
    with autocast(dev, inference_dtype(cfg.training.precision, dev)):
        out = model.generate(idx, max_new_tokens, temperature=temperature, top_k=top_k,
                             generator=gen, eos_id=EOS_ID, use_cache=use_cache)
    new = [i for i in out[0, len(ids):].tolist() if i != EOS_ID]
    return prompt + trained.tok.decode(new)


def run(cfg: Config, prompt: str, *, echo: Log, **options: Any) -> None:
    """Print the prompt and its sampled continuation (messages such as a vocabulary sync go
    to stderr, so that stdout holds only the text)."""
    echo(generate_text(cfg, prompt, log=lambda m: click.echo(m, err=True), **options))
