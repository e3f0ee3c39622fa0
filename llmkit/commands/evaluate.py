"""`llmkit eval`: validation metrics of a checkpoint, through the same code as training."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import lightning as L

from llmkit.config import Config
from llmkit.console import Log
from llmkit.data.module import LlmkitDataModule
from llmkit.data.prepare import prepare_data
from llmkit.metrics.lm import bits_per_token
from llmkit.trainer.build import resolve_precision
from llmkit.trainer.restore import load_trained


def evaluate(cfg: Config, checkpoint: Path | None = None,
             log=lambda message: None) -> dict[str, Any]:
    """Validation metrics of `checkpoint` (default: the best of the latest run).

    LM projects get loss, perplexity, bits per token and bits per byte (bits per token
    divided by the validation split's bytes per token); span projects get the span metrics.
    """
    cfg, tok, module, ckpt_path = load_trained(cfg, checkpoint, log=log)
    prepared = prepare_data(cfg, tok, log=log, progress=False)
    trainer = L.Trainer(accelerator="auto", devices=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=cfg.training.val_batches,
                        precision=resolve_precision(cfg.training.precision))
    results = trainer.validate(module, datamodule=LlmkitDataModule(cfg, tok), verbose=False)
    metrics: dict[str, Any] = {k: float(v) for k, v in results[0].items()
                               if k.startswith("val/")}
    if cfg.project.task == "lm" and "val/loss" in metrics:
        report = prepared.report
        val_text_tokens = report.tokens_val - report.documents_val  # without the EOS joins
        bytes_per_token = report.bytes_val / val_text_tokens if val_text_tokens > 0 else None
        if bytes_per_token:
            metrics["val/bits_per_byte"] = bits_per_token(metrics["val/loss"]) / bytes_per_token
    metrics = {k: (v if not isinstance(v, float) or math.isfinite(v) else None)
               for k, v in metrics.items()}
    metrics["checkpoint"] = str(ckpt_path)
    return metrics


def run(cfg: Config, checkpoint: Path | None, *, as_json: bool,
        echo: Log) -> None:
    """Print the metrics of `checkpoint`, one per line or as JSON."""
    metrics = evaluate(cfg, checkpoint)
    if as_json:
        echo(json.dumps(metrics, indent=2, sort_keys=True))
        return
    for key, value in metrics.items():
        echo(f"{key:>22}: {value:.4f}" if isinstance(value, float) else f"{key:>22}: {value}")
