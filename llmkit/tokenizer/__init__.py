"""Tokenizers for llmkit: train (byte-level BPE or char), load, check ids, convert spans.

The tokenizer is the single source of truth for the vocabulary: its real size, not the
size asked of the trainer, is what models are built with and what ids are checked against.
"""

from __future__ import annotations

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
