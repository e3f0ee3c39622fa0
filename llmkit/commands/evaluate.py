"""`llmkit eval`: validation metrics of a checkpoint, on the same batches as training's
validation, without Lightning.

LM projects get loss, perplexity, bits per token and bits per byte; span projects the span
metrics. The numbers equal the ones the run logged at that checkpoint's validation (the
same windows or examples, the same loss and decoder), on `--device`.
"""

from __future__ import annotations

import itertools
import json
import math
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from llmkit.config import Config
from llmkit.console import Log
from llmkit.data.lm import LMValWindows
from llmkit.data.prepare import prepare_data
from llmkit.data.spans import SpanDataset, collate_spans
from llmkit.inference import autocast, inference_dtype, load_model, resolve_device
from llmkit.metrics.lm import bits_per_token, perplexity
from llmkit.metrics.spans import score_spans
from llmkit.models import CausalLM, SpanModel, decode_spans, span_loss
from llmkit.tokenizer import token_span_to_char_span


def evaluate(cfg: Config, checkpoint: Path | None = None, *, device: str = "auto",
             log: Log = lambda message: None) -> dict[str, Any]:
    """Validation metrics of `checkpoint` (default: the best of the latest run).

    Non-finite values come back as None; the checkpoint's path is under "checkpoint".
    """
    dev = resolve_device(device)
    trained = load_model(cfg, checkpoint, log=log)
    cfg, tok = trained.cfg, trained.tok
    prepared = prepare_data(cfg, tok, log=log, progress=False)
    model = trained.model.to(dev)
    batch_size = cfg.training.batch_size
    assert batch_size is not None  # filled from the size preset
    with torch.no_grad(), autocast(dev, inference_dtype(cfg.training.precision, dev)):
        if isinstance(model, CausalLM):
            windows = LMValWindows(prepared.val, cfg.model.block_size,
                                   cfg.training.val_batches * batch_size,
                                   vocab_size=tok.vocab_size)
            metrics = _lm_metrics(model, DataLoader(windows, batch_size=batch_size), dev)
            per_token = prepared.report.val_bytes_per_token
            if metrics["val/loss"] is not None and per_token:
                metrics["val/bits_per_byte"] = metrics["val/bits_per_token"] / per_token
        else:
            dataset = SpanDataset(prepared.val, vocab_size=tok.vocab_size)
            loader = DataLoader(dataset, batch_size=batch_size,
                                collate_fn=partial(collate_spans, pad_id=tok.pad_id))
            batches = itertools.islice(loader, cfg.training.val_batches)
            metrics = _span_metrics(model, batches, dataset, cfg, dev)
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
    ce = float(total) / max(count, 1)  # this is a CPU-GPU sync point (once)
    return {"val/loss": ce, "val/ppl": perplexity(ce), "val/bits_per_token": bits_per_token(ce)}


def _span_metrics(model: SpanModel, batches, dataset: SpanDataset, cfg: Config,
                  device: torch.device) -> dict[str, Any]:
    """The span task's validation: loss, then the decoded character spans scored against
    the gold ones (the same steps as `SpanModule`'s validation)."""
    loss_sum, n = 0.0, 0
    preds, golds = [], []
    for batch in batches:
        ids, mask = batch["ids"].to(device), batch["mask"].to(device)
        start_logits, end_logits = model(ids, mask)
        loss = span_loss(start_logits, end_logits, batch["start"].to(device),
                         batch["end"].to(device), mask)
        loss_sum += float(loss) * ids.size(0)
        n += ids.size(0)
        starts, ends, _ = decode_spans(start_logits, end_logits, mask,
                                       cfg.span.max_span_tokens, cfg.span.nospan_threshold)
        for i, s, e in zip(batch["index"].tolist(), starts.tolist(), ends.tolist(),
                           strict=True):
            example = dataset.examples[i]
            preds.append(token_span_to_char_span(example["offsets"], s, e) if e > s
                         else (0, 0))
            golds.append(tuple(example["char_span"] or (0, 0)))
    scores = score_spans(preds, golds)
    return {"val/loss": loss_sum / max(1, n), **scores.to_log_dict("val/")}


def run(cfg: Config, checkpoint: Path | None, *, as_json: bool, device: str = "auto",
        echo: Log) -> None:
    """Print the metrics of `checkpoint`, one per line or as JSON."""
    metrics = evaluate(cfg, checkpoint, device=device)
    if as_json:
        echo(json.dumps(metrics, indent=2, sort_keys=True))
        return
    for key, value in metrics.items():
        echo(f"{key:>22}: {value:.4f}" if isinstance(value, float) else f"{key:>22}: {value}")
