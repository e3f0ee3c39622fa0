"""`llmkit train`: run the training story and print where its results are."""

from __future__ import annotations

from pathlib import Path

from llmkit.console import Log
from llmkit.trainer.run import train


def run(root: Path, overrides: list[str], *, resume: bool, echo: Log) -> None:
    """Train the project at `root`; the closing lines come from rank 0 only."""
    result = train(root, overrides=overrides, resume=resume, log=echo)
    if summary := result.summary():  # empty on DDP ranks other than 0
        echo(summary)
