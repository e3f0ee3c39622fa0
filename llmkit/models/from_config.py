"""The model shape from the project config, checked against the tokenizer.

Kept apart from `gpt.py` (which knows nothing of configs or tokenizers) and from the
trainer (so that loading a model for inference needs no Lightning).
"""

from __future__ import annotations

from llmkit.config import Config
from llmkit.errors import VocabMismatchError
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
    return GPTConfig(vocab_size=tok.vocab_size, n_layer=model.n_layer, n_head=model.n_head,
                     n_embd=model.n_embd, block_size=model.block_size, dropout=model.dropout,
                     bias=model.bias, causal=cfg.project.task == "lm",
                     pad_vocab_multiple=model.pad_vocab_multiple)
