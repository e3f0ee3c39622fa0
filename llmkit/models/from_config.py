"""The model shape from the project config, checked against the tokenizer.

Kept apart from `gpt.py` (which knows nothing of configs or tokenizers) and from the
trainer (so that loading a model for inference needs no Lightning).
"""

from __future__ import annotations

import os

from llmkit.config import Config
from llmkit.errors import ConfigError, VocabMismatchError
from llmkit.models.gpt import GPTConfig
from llmkit.tokenizer import Tokenizer


def gpt_config(cfg: Config, tok: Tokenizer) -> GPTConfig:
    """The model shape, with the vocabulary size checked against the tokenizer."""
    model = cfg.model
    if model.vocab_size != tok.vocab_size:  # ensure_tokenizer syncs; this guards direct callers
        raise VocabMismatchError(
            f"model.vocab_size is {model.vocab_size} but {cfg.tokenizer.path} has "
            f"{tok.vocab_size} tokens; run `llmkit tokenizer` (or `llmkit train`, which "
            f"syncs it) so that the config matches the tokenizer")
    _check_fits_in_memory(cfg, tok.vocab_size)
    return GPTConfig(vocab_size=tok.vocab_size, n_layer=model.n_layer, n_head=model.n_head,
                     n_embd=model.n_embd, block_size=model.block_size, dropout=model.dropout,
                     bias=model.bias, causal=cfg.project.task == "lm",
                     pad_vocab_multiple=model.pad_vocab_multiple, arch=model.arch,
                     tie_embeddings=model.tie_embeddings)


def _check_fits_in_memory(cfg: Config, vocab_size: int) -> None:
    """Refuse a shape whose float32 weights alone exceed this machine's memory.

    Building it would fail inside torch with an allocation traceback (or overflow), after
    a long wait; the estimate is plain integer arithmetic (embeddings, and per block the
    attention and MLP matrices: 12 n_embd^2), so it costs nothing for any shape.
    """
    model = cfg.model
    rows = -(-vocab_size // model.pad_vocab_multiple) * model.pad_vocab_multiple
    params = (rows + model.block_size) * model.n_embd + model.n_layer * 12 * model.n_embd**2
    need = 4 * params
    try:
        have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not on this platform: build and see
        return
    if need > have:
        raise ConfigError([
            f"model: n_layer={model.n_layer}, n_embd={model.n_embd}, block_size="
            f"{model.block_size} and {vocab_size} tokens make about {params:.3g} parameters, "
            f"{need / 2**30:.3g} GiB of float32 weights alone, more than this machine's "
            f"{have / 2**30:.3g} GiB; lower model.n_embd or model.n_layer (or use "
            f"model.size: tiny/small/base)"],
            str(cfg.file))
