"""Data: find and read the files, encode them into a cache, serve them as batches.

Every name here is imported on first use: `llmkit prepare` needs no torch, and
`llmkit.data.sources` (the one reader of documents, which the tokenizer trainer uses too)
imports nothing but the config.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llmkit.data.cache import PreparedData, load_prepared, stale_reason
    from llmkit.data.lm import LMTrainWindows, LMValWindows
    from llmkit.data.module import LlmkitDataModule
    from llmkit.data.prepare import prepare_data
    from llmkit.data.report import DataReport
    from llmkit.data.spans import SpanDataset, collate_spans

_LAZY = {
    "DataReport": "llmkit.data.report",
    "PreparedData": "llmkit.data.cache",
    "load_prepared": "llmkit.data.cache",
    "prepare_data": "llmkit.data.prepare",
    "stale_reason": "llmkit.data.cache",
    "LMTrainWindows": "llmkit.data.lm",
    "LMValWindows": "llmkit.data.lm",
    "LlmkitDataModule": "llmkit.data.module",
    "SpanDataset": "llmkit.data.spans",
    "collate_spans": "llmkit.data.spans",
}

__all__ = [
    "DataReport",
    "LMTrainWindows",
    "LMValWindows",
    "LlmkitDataModule",
    "PreparedData",
    "SpanDataset",
    "collate_spans",
    "load_prepared",
    "prepare_data",
    "stale_reason",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'llmkit.data' has no attribute {name!r}")
