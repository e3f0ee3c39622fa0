"""`llmkit export`: a checkpoint -> a folder that `transformers` loads with identical logits."""

from __future__ import annotations

from pathlib import Path

from llmkit.config import Config
from llmkit.console import Log
from llmkit.export import export_model, verify_export, verify_span_export
from llmkit.inference import load_model

DEFAULT_OUT = "export"  # under the project folder


def run(cfg: Config, *, checkpoint: Path | None, out: Path | None, force: bool, verify: bool,
        echo: Log) -> None:
    """Export the checkpoint (default: the best of the latest run); with `verify`, load the
    folder back (with transformers for LMs) and compare ids and logits with llmkit's."""
    trained = load_model(cfg, checkpoint, log=echo)
    folder = out if out is not None else cfg.path(DEFAULT_OUT)
    result = export_model(trained, folder, force=force)
    echo(f"checkpoint {trained.path} (step {trained.step})")
    echo(result.summary())
    if verify:
        check = verify_export if result.hf_class else verify_span_export
        echo(check(folder, trained).summary())
