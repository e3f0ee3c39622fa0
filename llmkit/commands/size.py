"""`llmkit size`: data statistics, the preset table and the size that fits the data."""

from __future__ import annotations

from llmkit.config import PRESETS, Config
from llmkit.console import Log
from llmkit.data.prepare import prepare_data
from llmkit.data.report import format_percentiles
from llmkit.models.from_config import gpt_config
from llmkit.preflight import preflight_warnings
from llmkit.sizing import (
    CHINCHILLA_TOKENS_PER_PARAM,
    TARGET_TOKENS_PER_PARAM,
    USEFUL_EPOCHS,
    context_advice,
    format_ratio,
    format_table,
    model_params,
    recommend_preset,
)
from llmkit.vocab_sync import ensure_tokenizer


def size_command(cfg: Config, log: Log = print) -> str:
    """What `llmkit size` prints: data statistics, the preset table, the recommendation
    and the pre-flight warnings for the configured model.

    Trains the tokenizer and prepares the data first when they are missing or stale (the
    numbers come from the prepared data's report in meta.json). Progress messages go to
    `log`; the returned text is the answer.
    """
    cfg, tok = ensure_tokenizer(cfg, log=log)
    prepared = prepare_data(cfg, tok, log=log)
    report = dict(prepared.meta["report"])
    task = cfg.project.task
    tokens = int(report["tokens_train"])
    model = cfg.model
    rec = recommend_preset(tokens, tok.vocab_size, task, bias=model.bias,
                           pad_vocab_multiple=model.pad_vocab_multiple)
    gpt = gpt_config(cfg, tok)

    unit = "examples" if task == "span" else "documents"
    used, vocab = int(report.get("vocab_used", 0)), int(report.get("vocab_size", tok.vocab_size))
    lines = [
        f"data: {tokens:,} training tokens in {int(report.get('documents_train', 0)):,} "
        f"{unit} ({int(report.get('tokens_val', 0)):,} validation tokens)",
        f"vocabulary: {vocab:,} ids ({tok.kind}); {used:,} occur in the training data "
        f"({used / vocab if vocab else 0:.1%})",
        *_span_lengths(cfg, report),
        "",
        format_table(rec.table, current=model.size),
        "",
        f"target: >= {TARGET_TOKENS_PER_PARAM:g} training tokens per non-embedding parameter "
        f"(Chinchilla's {CHINCHILLA_TOKENS_PER_PARAM:g} over up to {USEFUL_EPOCHS} epochs of "
        f"repeated data; see docs/sizing.md)",
    ]
    if model.size == "custom" or _differs_from_preset(cfg):
        total, non_emb = model_params(gpt, task)
        lines.append(f"configured model: {total:,} parameters, {non_emb:,} non-embedding "
                     f"({format_ratio(tokens / non_emb)} tokens per parameter)")
    lines.append(rec.format())
    if rec.preset != model.size:
        lines.append(f"  to use it: set model.size: {rec.preset} in llmkit.yaml (or "
                     f"-o model.size={rec.preset})")
    lines.extend(preflight_warnings(cfg, gpt, report))
    return "\n".join(lines)


def _span_lengths(cfg: Config, report: dict) -> list[str]:
    """Span examples' length percentiles in tokens and how the context fits them."""
    p = report.get("example_tokens")
    if cfg.project.task != "span" or not p:
        return []
    n = int(report.get("documents_train", 0)) + int(report.get("documents_val", 0))
    return [f"example length: {format_percentiles(p)} tokens (question, context and "
            f"special tokens)",
            *context_advice(p, cfg.model.block_size, report.get("multi_window_examples"), n,
                            cfg.data.window_stride)]


def _differs_from_preset(cfg: Config) -> bool:
    """True when the configured shape is not exactly its preset's (keys set by hand)."""
    preset = PRESETS.get(cfg.model.size)
    if preset is None:
        return True
    return any(getattr(cfg.model, k) != preset[k] for k in ("n_layer", "n_head", "n_embd",
                                                           "block_size"))


def run(cfg: Config, echo: Log) -> None:
    """Print the answer of `size_command`; progress messages go to `echo` as they come."""
    echo(size_command(cfg, log=echo))
