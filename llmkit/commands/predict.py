"""`llmkit predict`: the character span a span-prediction checkpoint picks in each text.

No Lightning: the model runs on `--device` (bf16 where training was). Inputs are read
like span data (a `text`, or a `context` with an optional `question`),
encoded by the same function, cut into the same windows and decoded by the same function
as validation (`llmkit.span_decode`); texts of any length get an answer. Each output line
keeps its input line's other fields.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from llmkit.config import Config
from llmkit.console import Log
from llmkit.data.sources import BadLine, SourceFile, iter_jsonl
from llmkit.data.spans import (
    CONTEXT_FIELD,
    SpanInput,
    SpanProblem,
    encode_span_inputs,
    parse_span_line,
)
from llmkit.data.windows import SpanAnswer
from llmkit.errors import DataError, LlmkitError
from llmkit.fsutil import atomic_write_text
from llmkit.inference import autocast, inference_dtype, load_model, resolve_device
from llmkit.span_decode import predict_examples
from llmkit.tokenizer import check_token_ids


def predict_spans(cfg: Config, *, text: str | None = None, input_path: Path | None = None,
                  output: Path | None = None, checkpoint: Path | None = None,
                  batch_size: int = 32, keep_text: bool = False, device: str = "auto",
                  echo: Log = print) -> list[dict[str, Any]]:
    """Predict spans for `text` or each line of a JSONL file; print or write JSONL.

    Each output line is its input line's fields (an `id`, anything else) without the text
    or context (`keep_text` keeps them), plus `span` (character offsets into the text or
    context, or null), `span_text` and `score` (the best span's margin over "no span"
    across the text's windows; null when no window had room for a span). Input fields of
    those three names are replaced. Every input line gets an output line, in order; a
    line that cannot be read stops the command before anything is written.
    """
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
    cfg, tok, model = trained.cfg, trained.tok, trained.model.to(dev)
    records = ([({cfg.data.text_field: text}, "--text")] if text is not None
               else list(_read_records(input_path)))
    inputs = [_input(obj, source, cfg.data.text_field) for obj, source in records]
    examples = []
    encoded = encode_span_inputs(tok, inputs, cfg.model.block_size, cfg.data.window_stride)
    for inp, ex in zip(inputs, encoded, strict=True):
        if isinstance(ex, SpanProblem):
            raise DataError(f"{inp.source}: {ex.reason}")
        check_token_ids([*ex.prefix_ids, *ex.ids], tok.vocab_size, source=inp.source)
        examples.append(ex)
    with autocast(dev, inference_dtype(cfg.training.precision, dev)):
        answers = predict_examples(model, examples, block_size=cfg.model.block_size,
                                   stride=cfg.data.window_stride,
                                   max_span_tokens=cfg.span.max_span_tokens,
                                   nospan_threshold=cfg.span.nospan_threshold,
                                   batch_size=batch_size)
    results = [_output(obj, inp, answer, cfg.data.text_field, keep_text)
               for (obj, _), inp, answer in zip(records, inputs, answers, strict=True)]
    if output is not None:
        atomic_write_text(output, "".join(json.dumps(r, ensure_ascii=False) + "\n"
                                          for r in results))
        echo(f"wrote {len(results)} predictions to {output}")
    elif text is not None:
        (r,) = results
        where = f"[{r['span'][0]}, {r['span'][1]}) {r['span_text']!r}" if r["span"] else \
            "no span"
        score = f"{r['score']:.3f}" if r["score"] is not None else "n/a"
        echo(f"{text}\n  span: {where}  score: {score}")
    else:
        for r in results:
            echo(json.dumps(r, ensure_ascii=False))
    return results


def _input(obj: dict[str, Any], source: str, text_field: str) -> SpanInput:
    # A gold "span" in the input is not needed to predict, and not checked.
    try:
        return parse_span_line({k: v for k, v in obj.items() if k != "span"}, source,
                               text_field, need_span=False)
    except SpanProblem as p:
        raise DataError(f"{source}: {p.reason}") from None


def _output(obj: dict[str, Any], inp: SpanInput, answer: SpanAnswer, text_field: str,
            keep_text: bool) -> dict[str, Any]:
    texts = (text_field, CONTEXT_FIELD)
    out = {k: v for k, v in obj.items() if keep_text or k not in texts}
    span, score = answer.span, answer.score
    out.update(span=list(span) if span else None,
               span_text=inp.text[span[0]:span[1]] if span else None,
               score=score if score is not None and math.isfinite(score) else None)
    return out


def _read_records(path: Path | None) -> Iterator[tuple[dict[str, Any], str]]:
    """(object, file:line) of each line of a JSONL file, read as `llmkit prepare` reads data."""
    if path is None or not path.is_file():
        raise DataError(f"--input {path}: no such file")
    f = SourceFile(path=path, name=str(path), format="jsonl", size=path.stat().st_size)
    for item in iter_jsonl(f):
        if isinstance(item, BadLine):
            raise DataError(str(item))  # predict answers every line or none
        where, obj = item
        yield obj, where


def run(cfg: Config, *, text: str | None, input_path: Path | None, output: Path | None,
        checkpoint: Path | None, batch_size: int = 32, keep_text: bool = False,
        device: str = "auto", echo: Log) -> None:
    """Predict and print (or write) the spans; see `predict_spans`."""
    predict_spans(cfg, text=text, input_path=input_path, output=output, checkpoint=checkpoint,
                  batch_size=batch_size, keep_text=keep_text, device=device, echo=echo)
