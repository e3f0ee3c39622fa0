"""`llmkit prepare`: encode the data into the cache (when stale), report on it, and say
what is likely to go wrong training the configured model on it."""

from __future__ import annotations

from llmkit.config import Config
from llmkit.console import Log
from llmkit.data.prepare import prepare_data
from llmkit.lock import run_lock
from llmkit.models.from_config import gpt_config
from llmkit.preflight import preflight_warnings
from llmkit.vocab_sync import ensure_tokenizer


def run(cfg: Config, *, force: bool, echo: Log) -> None:
    """Load (or train) the tokenizer, prepare the data; the data report is printed by
    `prepare_data`, the findings on it here, each once."""
    with run_lock(cfg):
        cfg, tok = ensure_tokenizer(cfg, log=echo)
        prepared = prepare_data(cfg, tok, force=force, log=echo)
    for line in preflight_warnings(cfg, gpt_config(cfg, tok), prepared.meta["report"]):
        echo(line)
