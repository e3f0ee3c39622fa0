"""`llmkit tokenizer`: train the project's tokenizer and sync `model.vocab_size`."""

from __future__ import annotations

from llmkit.config import Config
from llmkit.console import Log
from llmkit.lock import run_lock
from llmkit.vocab_sync import train_project_tokenizer


def run(cfg: Config, echo: Log) -> None:
    """Train the tokenizer on the training data; the config then holds its real size."""
    with run_lock(cfg):
        train_project_tokenizer(cfg, log=echo)
