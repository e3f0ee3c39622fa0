"""Data: find and read the files, encode them into a cache, serve them as batches.

`prepare_data` (prepare.py), `stale_reason` (cache.py) and the data report (report.py) need no
torch, so `llmkit prepare` starts quickly; the datasets and the DataModule, which do, are
imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llmkit.data.prepare import PreparedData, load_prepared, prepare_data, stale_reason
from llmkit.data.report import DataReport

if TYPE_CHECKING:
    from llmkit.data.lm import LMTrainWindows, LMValWindows
    from llmkit.data.module import LlmkitDataModule
    from llmkit.data.spans import SpanDataset, collate_spans

_LAZY = {
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
