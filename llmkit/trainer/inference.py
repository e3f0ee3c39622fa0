"""Using a trained checkpoint: load it safely, generate text, predict spans."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from llmkit.config import Config
from llmkit.data.spans import (
    CONTEXT_FIELD,
    SpanExample,
    SpanInput,
    SpanProblem,
    collate_spans,
    encode_span_inputs,
    parse_span_line,
)
from llmkit.data.windows import SpanAnswer, best_spans, window_candidates
from llmkit.errors import CheckpointError, DataError, LlmkitError
from llmkit.models import SpanModel
from llmkit.tokenizer import EOS_ID, Tokenizer, check_token_ids
from llmkit.trainer.build import build_module, gpt_config
from llmkit.trainer.checkpoint import check_compatible, find_checkpoint, load_checkpoint
from llmkit.trainer.sync import sync_vocab
from llmkit.trainer.task import TaskModule


def load_trained(cfg: Config, checkpoint: Path | None = None,
                 log: Callable[[str], None] = print) -> tuple[Config, Tokenizer, TaskModule, Path]:
    """The project's tokenizer and a module with the checkpoint's weights, in eval mode.

    The checkpoint must have been trained with this tokenizer and model shape (checked
    before any weight is loaded); it is read with `weights_only=True`.
    """
    path = cfg.path(cfg.tokenizer.path)
    if not path.exists():
        raise LlmkitError(f"no tokenizer at {cfg.tokenizer.path}; train first with "
                          f"`llmkit train`")
    tok = Tokenizer.load(path)
    cfg = sync_vocab(cfg, tok, log)
    ckpt_path = find_checkpoint(cfg, checkpoint)
    ckpt = load_checkpoint(ckpt_path)
    if "llmkit" not in ckpt or "state_dict" not in ckpt:
        raise CheckpointError(f"{ckpt_path} is not an llmkit checkpoint (no 'llmkit' entry)")
    check_compatible(ckpt["llmkit"], cfg, gpt_config(cfg, tok), tok, ckpt_path)
    module = build_module(cfg, tok)
    module.load_state_dict(ckpt["state_dict"])
    module.eval()
    return cfg, tok, module, ckpt_path


def generate_text(cfg: Config, prompt: str, *, checkpoint: Path | None = None,
                  max_new_tokens: int = 100, temperature: float = 0.8, top_k: int | None = None,
                  seed: int | None = None) -> str:
    """The prompt followed by `max_new_tokens` sampled tokens, as text."""
    if cfg.project.task != "lm":
        raise LlmkitError("`llmkit generate` needs a language-model project (project.task: "
                          "lm); use `llmkit predict` for span projects")
    if max_new_tokens < 1 or temperature < 0 or (top_k is not None and top_k < 1):
        raise LlmkitError(f"need --max-new-tokens >= 1, --temperature >= 0, --top-k >= 1; got "
                          f"{max_new_tokens}, {temperature}, {top_k}")
    cfg, tok, module, _ = load_trained(cfg, checkpoint)
    # Training text is documents joined by EOS, so EOS is what precedes a document's start.
    ids = [EOS_ID, *tok.encode(prompt)]
    check_token_ids(ids, tok.vocab_size, source=f"prompt {prompt[:40]!r}")
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    idx = torch.tensor([ids], dtype=torch.long)
    out = module.model.generate(idx, max_new_tokens, temperature=temperature, top_k=top_k,
                                generator=gen, eos_id=EOS_ID)
    new = [i for i in out[0, len(ids):].tolist() if i != EOS_ID]
    return prompt + tok.decode(new)


PREDICTED_KEYS = ("span", "span_text", "score")


@torch.no_grad()
def predict_examples(model: SpanModel, examples: Sequence[SpanExample], *, block_size: int,
                     stride: int | None, max_span_tokens: int, nospan_threshold: float,
                     batch_size: int = 32) -> list[SpanAnswer]:
    """The answer of each example: the best span over all its windows, or no span.

    Windows of all examples go through the model `batch_size` at a time (padding is
    masked, so a window's result does not depend on its batch-mates); each window offers
    its best span inside its context with its margin over "no span", and `best_spans`
    decides per example. Validation (SpanModule) decodes with the same functions.
    """
    from llmkit.models import decode_spans

    if batch_size < 1:
        raise LlmkitError(f"--batch-size must be >= 1, got {batch_size}")
    windows = [w for i, ex in enumerate(examples) for w in ex.windows(i, block_size, stride)]
    candidates = []
    device = next(model.parameters()).device
    for lo in range(0, len(windows), batch_size):
        part = windows[lo:lo + batch_size]
        batch = collate_spans(list(enumerate(part)))
        ids, mask = batch["ids"].to(device), batch["mask"].to(device)
        start_logits, end_logits = model(ids, mask)
        starts, ends, margins = decode_spans(start_logits, end_logits, mask, max_span_tokens,
                                             -math.inf, context=batch["context"].to(device))
        # .tolist() is a device-to-host sync, once per batch
        candidates += window_candidates(part, starts.tolist(), ends.tolist(), margins.tolist())
    return best_spans(candidates, len(examples), nospan_threshold)


def predict_spans(cfg: Config, *, text: str | None = None, input_path: Path | None = None,
                  output: Path | None = None, checkpoint: Path | None = None,
                  batch_size: int = 32, keep_text: bool = False,
                  echo: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Predict spans for `text` or each line of a JSONL file; print or write JSONL.

    Each output line is its input line's fields (an `id`, anything else) without the text
    (`keep_text` keeps it), plus `span` (character offsets into the text or context, or
    null), `span_text` and `score` (the best span's margin over "no span"; null when no
    window had room for a span). Input fields of those three names are replaced. Texts of
    any length are windowed like the training data; every input line gets an output line.
    """
    if cfg.project.task != "span":
        raise LlmkitError("`llmkit predict` needs a span project (project.task: span); use "
                          "`llmkit generate` for language models")
    cfg, tok, module, _ = load_trained(cfg, checkpoint)
    records = ([({cfg.data.text_field: text}, "--text")] if text is not None
               else list(_read_records(input_path)))
    inputs = [_input(obj, source, cfg.data.text_field) for obj, source in records]
    examples = []
    for inp, encoded in zip(inputs, encode_span_inputs(tok, inputs, cfg.model.block_size,
                                                       cfg.data.window_stride), strict=True):
        if isinstance(encoded, SpanProblem):
            raise DataError(f"{inp.source}: {encoded.reason}")
        check_token_ids([*encoded.prefix_ids, *encoded.ids], tok.vocab_size,
                        source=inp.source)
        examples.append(encoded)
    answers = predict_examples(module.model, examples, block_size=cfg.model.block_size,
                               stride=cfg.data.window_stride,
                               max_span_tokens=cfg.span.max_span_tokens,
                               nospan_threshold=cfg.span.nospan_threshold,
                               batch_size=batch_size)
    results = [_output(obj, inp, answer, cfg.data.text_field, keep_text)
               for (obj, _), inp, answer in zip(records, inputs, answers, strict=True)]
    if output is not None:
        from llmkit.fsutil import atomic_write_text

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
    span = answer.span
    score = answer.score
    out.update(span=list(span) if span else None,
               span_text=inp.text[span[0]:span[1]] if span else None,
               score=score if score is not None and math.isfinite(score) else None)
    return out


def _read_records(path: Path | None) -> Iterator[tuple[dict[str, Any], str]]:
    assert path is not None
    if not path.is_file():
        raise DataError(f"--input {path}: no such file")
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{n}: invalid JSON ({e.msg})") from None
            if not isinstance(obj, dict):
                raise DataError(f"{path}:{n}: expected a JSON object, found "
                                f"{type(obj).__name__}")
            yield obj, f"{path}:{n}"
