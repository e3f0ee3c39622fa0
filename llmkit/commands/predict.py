"""`llmkit predict`: the character span a span-prediction checkpoint picks in each text.

Texts are run in batches of similar length (padding is masked out, so a text's answer does
not depend on its neighbours), on `--device`, without Lightning.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from llmkit.config import Config
from llmkit.console import Log
from llmkit.data.sources import BadLine, SourceFile, iter_jsonl_documents
from llmkit.data.spans import SpanProblem, model_input
from llmkit.errors import DataError, LlmkitError
from llmkit.fsutil import atomic_write_text
from llmkit.inference import autocast, inference_dtype, load_model, resolve_device
from llmkit.models import SpanModel, decode_spans
from llmkit.tokenizer import PAD_ID, Tokenizer, check_token_ids, token_span_to_char_span


@torch.no_grad()
def predict_batch(model: SpanModel, tok: Tokenizer, cfg: Config,
                  items: list[tuple[str, str]], device: torch.device | None = None
                  ) -> list[dict[str, Any]]:
    """The predicted character span (or none) with its score, for each `(text, source)`.

    One forward pass over the texts padded to the longest; `source` names the text in
    errors (`--text`, `file:line`).
    """
    device = device or torch.device("cpu")
    inputs = []
    for text, source in items:
        try:
            ids, offsets = model_input(text, *tok.encode_offsets(text), cfg.model.block_size)
        except SpanProblem as e:
            raise DataError(f"{source}: {e.reason}") from None
        check_token_ids(ids, tok.vocab_size, source=source)
        inputs.append((ids, offsets))
    T = max(len(ids) for ids, _ in inputs)
    x = torch.full((len(inputs), T), PAD_ID, dtype=torch.long)
    mask = torch.zeros((len(inputs), T), dtype=torch.bool)
    for row, (ids, _) in enumerate(inputs):
        x[row, : len(ids)] = torch.tensor(ids)
        mask[row, : len(ids)] = True
    x, mask = x.to(device), mask.to(device)
    start_logits, end_logits = model(x, mask)
    starts, ends, scores = decode_spans(start_logits, end_logits, mask,
                                        cfg.span.max_span_tokens, cfg.span.nospan_threshold)
    results = []
    # this is a CPU-GPU sync point (once per batch)
    for (text, _), (_, offsets), ts, te, score in zip(items, inputs, starts.tolist(),
                                                      ends.tolist(), scores.tolist(),
                                                      strict=True):
        span = token_span_to_char_span(offsets, ts, te) if te > ts else None
        results.append({"text": text, "span": list(span) if span else None,
                        "span_text": text[span[0]:span[1]] if span else None,
                        "score": score if math.isfinite(score) else None})
    return results


def predict_spans(cfg: Config, *, text: str | None = None, input_path: Path | None = None,
                  output: Path | None = None, checkpoint: Path | None = None,
                  batch_size: int = 32, device: str = "auto",
                  echo: Log = print) -> list[dict[str, Any]]:
    """Predict spans for `text` or each line of a JSONL file; print or write JSONL."""
    if cfg.project.task != "span":
        raise LlmkitError("`llmkit predict` needs a span project (project.task: span); use "
                          "`llmkit generate` for language models")
    if output is not None and not output.parent.is_dir():  # say so before the slow part
        raise LlmkitError(f"--output {output}: the folder {output.parent} does not exist; "
                          f"create it first, or write the file somewhere that exists")
    if batch_size < 1:
        raise LlmkitError(f"--batch-size must be >= 1, got {batch_size}")
    dev = resolve_device(device)
    trained = load_model(cfg, checkpoint, log=echo)
    model = trained.model.to(dev)
    items = ([(text, "--text")] if text is not None
             else list(_read_texts(input_path, cfg.data.text_field)))
    results: list[dict[str, Any] | None] = [None] * len(items)
    with autocast(dev, inference_dtype(cfg.training.precision, dev)):
        for batch in _by_length(items, batch_size):
            for i, result in zip(batch, predict_batch(model, trained.tok, trained.cfg,
                                                      [items[i] for i in batch], dev),
                                 strict=True):
                results[i] = result
    done = [r for r in results if r is not None]
    if output is not None:
        atomic_write_text(output, "".join(json.dumps(r, ensure_ascii=False) + "\n"
                                          for r in done))
        echo(f"wrote {len(done)} predictions to {output}")
    else:
        for r in done:
            where = f"[{r['span'][0]}, {r['span'][1]}) {r['span_text']!r}" if r["span"] else \
                "no span"
            score = f"{r['score']:.3f}" if r["score"] is not None else "n/a"
            echo(f"{r['text']}\n  span: {where}  score: {score}")
    return done


def _by_length(items: list[tuple[str, str]], batch_size: int) -> Iterator[list[int]]:
    """Indices of `items` in batches of similar text length (less padding per batch)."""
    order = sorted(range(len(items)), key=lambda i: len(items[i][0]))
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


def _read_texts(path: Path | None, text_field: str) -> Iterator[tuple[str, str]]:
    """(text, file:line) of each line of a JSONL file, read as `llmkit prepare` reads data."""
    if path is None or not path.is_file():
        raise DataError(f"--input {path}: no such file")
    f = SourceFile(path=path, name=str(path), format="jsonl", size=path.stat().st_size)
    for item in iter_jsonl_documents(f, text_field):
        if isinstance(item, BadLine):
            raise DataError(str(item))  # predict answers every line or none
        yield item.text, item.source


def run(cfg: Config, *, text: str | None, input_path: Path | None, output: Path | None,
        checkpoint: Path | None, batch_size: int = 32, device: str = "auto",
        echo: Log) -> None:
    """Predict and print (or write) the spans; see `predict_spans`."""
    predict_spans(cfg, text=text, input_path=input_path, output=output, checkpoint=checkpoint,
                  batch_size=batch_size, device=device, echo=echo)
