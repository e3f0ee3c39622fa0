"""`llmkit generate`: sample a continuation of a prompt from a language-model checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from llmkit.config import Config
from llmkit.console import Log
from llmkit.errors import LlmkitError
from llmkit.tokenizer import EOS_ID, check_token_ids
from llmkit.trainer.restore import load_trained


def generate_text(cfg: Config, prompt: str, *, checkpoint: Path | None = None,
                  max_new_tokens: int = 100, temperature: float = 0.8, top_k: int | None = None,
                  seed: int | None = None) -> str:
    """The prompt followed by `max_new_tokens` sampled tokens, as text."""
    if cfg.project.task != "lm":
        raise LlmkitError("`llmkit generate` needs a language-model project (project.task: "
                          "lm); use `llmkit predict` for span projects")
    if max_new_tokens < 1 or temperature < 0 or (top_k is not None and top_k < 1):
        raise LlmkitError(f"need --max-new-tokens >= 1, --temperature >= 0, --top-k >= 1; got "
                          f"{max_new_tokens}, {temperature}, {top_k}")
    cfg, tok, module, _ = load_trained(cfg, checkpoint)
    # Training text is documents joined by EOS, so EOS is what precedes a document's start.
    ids = [EOS_ID, *tok.encode(prompt)]
    check_token_ids(ids, tok.vocab_size, source=f"prompt {prompt[:40]!r}")
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    idx = torch.tensor([ids], dtype=torch.long)
    out = module.model.generate(idx, max_new_tokens, temperature=temperature, top_k=top_k,
                                generator=gen, eos_id=EOS_ID)
    new = [i for i in out[0, len(ids):].tolist() if i != EOS_ID]
    return prompt + tok.decode(new)


def run(cfg: Config, prompt: str, *, echo: Log, **options: Any) -> None:
    """Print the prompt and its sampled continuation."""
    echo(generate_text(cfg, prompt, **options))
