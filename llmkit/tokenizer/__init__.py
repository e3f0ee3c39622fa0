"""Tokenizers for llmkit: train (byte-level BPE or char), load, check ids, convert spans.

The tokenizer is the single source of truth for the vocabulary: its real size, not the
size asked of the trainer, is what models are built with and what ids are checked against.

`train_tokenizer` is imported on first use: training reads data files through
`llmkit.data.sources`, and loading a tokenizer (or its constants) needs none of that.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llmkit.tokenizer.core import (
    BOS_ID,
    EOS_ID,
    KINDS,
    PAD_ID,
    UNK_ID,
    UNK_TOKEN,
    Tokenizer,
)
from llmkit.tokenizer.ids import check_token_ids
from llmkit.tokenizer.offsets import char_span_to_token_span, token_span_to_char_span

if TYPE_CHECKING:
    from llmkit.tokenizer.train import train_tokenizer

__all__ = [
    "BOS_ID",
    "EOS_ID",
    "KINDS",
    "PAD_ID",
    "UNK_ID",
    "UNK_TOKEN",
    "Tokenizer",
    "char_span_to_token_span",
    "check_token_ids",
    "token_span_to_char_span",
    "train_tokenizer",
]


def __getattr__(name: str) -> Any:
    if name == "train_tokenizer":
        import importlib

        return importlib.import_module("llmkit.tokenizer.train").train_tokenizer
    raise AttributeError(f"module 'llmkit.tokenizer' has no attribute {name!r}")
