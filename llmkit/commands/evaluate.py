"""`llmkit eval`: validation metrics of a checkpoint, on the same batches as training's
validation, without Lightning.

LM projects get loss, perplexity, bits per token and bits per byte; span projects the span
metrics. The numbers equal the ones the run logged at that checkpoint's validation (the
same windows or examples, the same loss and decoder), on `--device`.
"""

from __future__ import annotations

import json
import math
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from llmkit.config import Config
from llmkit.console import Log
from llmkit.data.prepare import prepare_data
from llmkit.data.spans import SpanDataset, collate_val_spans
from llmkit.data.validation import validation_set
from llmkit.inference import autocast, inference_dtype, load_model, resolve_device
from llmkit.metrics.lm import validation_metrics
from llmkit.models import CausalLM, SpanModel
from llmkit.span_decode import score_validation, validate_batch


def evaluate(cfg: Config, checkpoint: Path | None = None, *, device: str = "auto",
             log: Log = lambda message: None) -> dict[str, Any]:
    """Validation metrics of `checkpoint` (default: the best of the latest run).

    Span projects are scored on every validation example (or `span.val_examples` of them),
    with `val_examples` / `val_windows` saying how many.

    Non-finite values come back as None; the checkpoint's path is under "checkpoint".
    """
    dev = resolve_device(device)
    trained = load_model(cfg, checkpoint, log=log)
    cfg, tok = trained.cfg, trained.tok
    prepared = prepare_data(cfg, tok, log=log, progress=False)
    model = trained.model.to(dev)
    batch_size = cfg.training.batch_size
    assert batch_size is not None  # filled from the size preset
    dataset = validation_set(cfg, prepared, tok.vocab_size)  # the windows training scores
    with torch.no_grad(), autocast(dev, inference_dtype(cfg.training.precision, dev)):
        if isinstance(model, CausalLM):
            metrics = _lm_metrics(model, DataLoader(dataset, batch_size=batch_size), dev)
            per_token = prepared.report.val_bytes_per_token
            if metrics["val/loss"] is not None and per_token:
                metrics["val/bits_per_byte"] = metrics["val/bits_per_token"] / per_token
        else:
            assert isinstance(dataset, SpanDataset)
            loader = DataLoader(dataset, batch_size=batch_size,
                                collate_fn=partial(collate_val_spans, pad_id=tok.pad_id))
            metrics = _span_metrics(model, loader, dataset, cfg, dev)
    metrics = {k: (v if not isinstance(v, float) or math.isfinite(v) else None)
               for k, v in metrics.items()}
    metrics["checkpoint"] = str(trained.path)
    return metrics


def _lm_metrics(model: CausalLM, loader: DataLoader, device: torch.device) -> dict[str, Any]:
    """Token-weighted mean cross-entropy over the validation windows, and what follows."""
    total = torch.zeros((), dtype=torch.float64, device=device)
    count = 0
    for x, y in loader:
        _, loss = model(x.to(device), y.to(device))
        total += loss.double() * y.numel()
        count += y.numel()
    return validation_metrics(float(total) / max(count, 1))  # a CPU-GPU sync point (once)


def _span_metrics(model: SpanModel, loader: DataLoader, dataset: SpanDataset, cfg: Config,
                  device: torch.device) -> dict[str, Any]:
    """The span task's validation, batch by batch as `SpanModule` does it (loss over every
    window, then one answer per example scored against the gold spans), and how many
    examples and windows were scored."""
    loss_sum = torch.zeros((), device=device)
    candidates = {}
    for batch in loader:
        on_device = {k: v.to(device) if isinstance(v, torch.Tensor) else v
                     for k, v in batch.items()}
        batch_loss, found = validate_batch(model, on_device, cfg.span.max_span_tokens)
        loss_sum += batch_loss
        candidates.update(found)
    result = score_validation(candidates, float(loss_sum), dataset.examples,  # one sync
                              cfg.span.nospan_threshold)
    return {**result.metrics, "val_examples": result.counts["examples"],
            "val_windows": result.counts["windows"]}


def run(cfg: Config, checkpoint: Path | None, *, as_json: bool, device: str = "auto",
        echo: Log) -> None:
    """Print the metrics of `checkpoint`, one per line or as JSON."""
    metrics = evaluate(cfg, checkpoint, device=device)
    if as_json:
        echo(json.dumps(metrics, indent=2, sort_keys=True))
        return
    for key, value in metrics.items():
        echo(f"{key:>22}: {value:.4f}" if isinstance(value, float) else f"{key:>22}: {value}")
