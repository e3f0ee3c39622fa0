"""The validation set of a project: the one definition that training's validation and
`llmkit eval` (which has no Lightning) both read, so both score the same windows."""

from __future__ import annotations

from llmkit.config import Config
from llmkit.data.cache import PreparedData
from llmkit.data.lm import LMValWindows
from llmkit.data.spans import SpanDataset


def validation_set(cfg: Config, prepared: PreparedData,
                   vocab_size: int) -> LMValWindows | SpanDataset:
    """LM: `training.val_batches` batches of fixed windows. Span: every validation
    example's windows, unless `span.val_examples` caps them (then a seeded random choice,
    not the first examples of the file)."""
    if cfg.project.task == "lm":
        assert cfg.training.batch_size is not None  # filled from the size preset
        return LMValWindows(prepared.val, cfg.model.block_size,
                            cfg.training.val_batches * cfg.training.batch_size,
                            vocab_size=vocab_size)
    return SpanDataset(prepared.val, cfg.model.block_size, cfg.data.window_stride,
                       vocab_size=vocab_size, max_examples=cfg.span.val_examples,
                       seed=cfg.project.seed)
