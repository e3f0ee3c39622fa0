"""`llmkit prepare`: encode the data into the cache (when stale) and report on it."""

from __future__ import annotations

from collections.abc import Callable

from llmkit.config import Config
from llmkit.data.prepare import prepare_data
from llmkit.vocab_sync import ensure_tokenizer


def run(cfg: Config, *, force: bool, echo: Callable[[str], None]) -> None:
    """Load (or train) the tokenizer, then prepare the data; the report is printed."""
    cfg, tok = ensure_tokenizer(cfg, log=echo)
    prepared = prepare_data(cfg, tok, force=force, log=echo)
    echo(prepared.report.format())
