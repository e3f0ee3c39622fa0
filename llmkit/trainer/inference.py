"""Using a trained checkpoint: load it safely, generate text, predict spans."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from llmkit.config import Config
from llmkit.data.spans import SpanProblem, model_input
from llmkit.errors import CheckpointError, DataError, LlmkitError
from llmkit.tokenizer import EOS_ID, Tokenizer, check_token_ids, token_span_to_char_span
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


@torch.no_grad()
def predict_one(module: TaskModule, tok: Tokenizer, cfg: Config, text: str,
                source: str) -> dict[str, Any]:
    """The predicted character span of one text (or none) with its score."""
    from llmkit.models import decode_spans

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
                  echo: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Predict spans for `text` or each line of a JSONL file; print or write JSONL."""
    if cfg.project.task != "span":
        raise LlmkitError("`llmkit predict` needs a span project (project.task: span); use "
                          "`llmkit generate` for language models")
    cfg, tok, module, _ = load_trained(cfg, checkpoint)
    items = [(text, "--text")] if text is not None else list(_read_texts(input_path))
    results = [predict_one(module, tok, cfg, t, src) for t, src in items]
    if output is not None:
        from llmkit.fsutil import atomic_write_text

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


def _read_texts(path: Path | None):
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
            if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
                raise DataError(f"{path}:{n}: expected an object with a string 'text' field")
            yield obj["text"], f"{path}:{n}"
