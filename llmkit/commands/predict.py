"""`llmkit predict`: the character span a span-prediction checkpoint picks in each text."""

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
from llmkit.models import decode_spans
from llmkit.tokenizer import Tokenizer, check_token_ids, token_span_to_char_span
from llmkit.trainer.restore import load_trained
from llmkit.trainer.task import TaskModule


@torch.no_grad()
def predict_one(module: TaskModule, tok: Tokenizer, cfg: Config, text: str,
                source: str) -> dict[str, Any]:
    """The predicted character span of one text (or none) with its score."""
    try:
        ids, offsets = model_input(text, *tok.encode_offsets(text), cfg.model.block_size)
    except SpanProblem as e:
        raise DataError(f"{source}: {e.reason}") from None
    check_token_ids(ids, tok.vocab_size, source=source)
    x = torch.tensor([ids], dtype=torch.long)
    mask = torch.ones_like(x, dtype=torch.bool)
    start_logits, end_logits = module.model(x, mask)
    starts, ends, scores = decode_spans(start_logits, end_logits, mask,
                                        cfg.span.max_span_tokens, cfg.span.nospan_threshold)
    ts, te, score = int(starts[0]), int(ends[0]), float(scores[0])
    span = token_span_to_char_span(offsets, ts, te) if te > ts else None
    return {"text": text, "span": list(span) if span else None,
            "span_text": text[span[0]:span[1]] if span else None,
            "score": score if math.isfinite(score) else None}


def predict_spans(cfg: Config, *, text: str | None = None, input_path: Path | None = None,
                  output: Path | None = None, checkpoint: Path | None = None,
                  echo: Log = print) -> list[dict[str, Any]]:
    """Predict spans for `text` or each line of a JSONL file; print or write JSONL."""
    if cfg.project.task != "span":
        raise LlmkitError("`llmkit predict` needs a span project (project.task: span); use "
                          "`llmkit generate` for language models")
    if output is not None and not output.parent.is_dir():  # say so before the slow part
        raise LlmkitError(f"--output {output}: the folder {output.parent} does not exist; "
                          f"create it first, or write the file somewhere that exists")
    cfg, tok, module, _ = load_trained(cfg, checkpoint)
    items = ([(text, "--text")] if text is not None
             else list(_read_texts(input_path, cfg.data.text_field)))
    results = [predict_one(module, tok, cfg, t, src) for t, src in items]
    if output is not None:
        atomic_write_text(output, "".join(json.dumps(r, ensure_ascii=False) + "\n"
                                          for r in results))
        echo(f"wrote {len(results)} predictions to {output}")
    else:
        for r in results:
            where = f"[{r['span'][0]}, {r['span'][1]}) {r['span_text']!r}" if r["span"] else \
                "no span"
            score = f"{r['score']:.3f}" if r["score"] is not None else "n/a"
            echo(f"{r['text']}\n  span: {where}  score: {score}")
    return results


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
        checkpoint: Path | None, echo: Log) -> None:
    """Predict and print (or write) the spans; see `predict_spans`."""
    predict_spans(cfg, text=text, input_path=input_path, output=output, checkpoint=checkpoint,
                  echo=echo)
