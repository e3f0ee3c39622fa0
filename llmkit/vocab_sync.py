"""The tokenizer as the single source of truth for the vocabulary (DESIGN.md, problem 1).

`ensure_tokenizer` trains the tokenizer when it is missing and writes its real size into
`model.vocab_size` of `llmkit.yaml` (comments and layout kept, file replaced atomically),
saying what changed. Every model build goes through it, so config and tokenizer agree.

A tokenizer trained with other settings than `llmkit.yaml` now asks for (kind, vocabulary
size, min_frequency, special tokens) is stale. `ensure_tokenizer` refuses it with both
values named and waits for `llmkit tokenizer`, rather than retraining on its own: a new
tokenizer changes every token id, so the data cache is rebuilt and every checkpoint made
with the old one stops loading, and the file may be shared with an LM project that a span
project starts from (`model.init_from`). Kind and special tokens are read from the file
itself; the sizes asked for are recorded beside it at training time
(`tokenizer.settings.json`, with the tokenizer's hash, so a record that no longer
describes the file is ignored rather than trusted).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from llmkit.config import Config, write_back
from llmkit.console import Log
from llmkit.data.sources import resolve_sources
from llmkit.errors import TokenizerError
from llmkit.fsutil import atomic_write_text
from llmkit.tokenizer import Tokenizer, train_tokenizer


def train_project_tokenizer(cfg: Config, log: Log = print,
                            show_progress: bool = True) -> tuple[Config, Tokenizer]:
    """Train the project's tokenizer on its training data, save it, sync the vocab size."""
    train_files, _ = resolve_sources(cfg)
    out = cfg.path(cfg.tokenizer.path)
    tokenizer = cfg.tokenizer
    asked = "" if tokenizer.kind == "char" else f", asked for {tokenizer.vocab_size} tokens"
    log(f"training a {tokenizer.kind} tokenizer on {len(train_files)} file(s){asked} ...")
    tok = train_tokenizer([f.path for f in train_files], out, kind=tokenizer.kind,
                          vocab_size=tokenizer.vocab_size, min_frequency=tokenizer.min_frequency,
                          bos=tokenizer.bos, eos=tokenizer.eos, pad=tokenizer.pad,
                          text_field=cfg.data.text_field, data_format=cfg.data.format,
                          show_progress=show_progress)
    atomic_write_text(settings_path(out), json.dumps(
        {"tokenizer_hash": tok.hash, **_asked(cfg)}, indent=2) + "\n")
    log(f"tokenizer: {tok.vocab_size} tokens -> {tokenizer.path}")
    return sync_vocab(cfg, tok, log), tok


def settings_path(tokenizer_path: Path) -> Path:
    """Where the settings a tokenizer was trained with are recorded."""
    return tokenizer_path.with_name(tokenizer_path.stem + ".settings.json")


def _asked(cfg: Config) -> dict[str, Any]:
    tokenizer = cfg.tokenizer
    return {"kind": tokenizer.kind, "vocab_size": tokenizer.vocab_size,
            "min_frequency": tokenizer.min_frequency, "bos": tokenizer.bos,
            "eos": tokenizer.eos, "pad": tokenizer.pad}


def stale_settings(cfg: Config, tok: Tokenizer) -> list[str]:
    """`tokenizer.KEY: trained X, llmkit.yaml Y` for each setting that changed since `tok`
    was trained; empty when it still is what the config asks for."""
    tokenizer = cfg.tokenizer
    found: dict[str, Any] = {"kind": tok.kind, "bos": tok.bos_token, "eos": tok.eos_token,
                             "pad": tok.pad_token}
    try:
        record = json.loads(settings_path(tok.path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        record = None
    if isinstance(record, dict) and record.get("tokenizer_hash") == tok.hash:
        found.update({k: record[k] for k in ("vocab_size", "min_frequency") if k in record})
    elif tok.kind == "bpe" and tok.vocab_size > tokenizer.vocab_size:
        found["vocab_size"] = tok.vocab_size  # no record, but plainly more than asked for
    asked = _asked(cfg)
    if tokenizer.kind == "char":  # char takes every character of the data: no size to ask for
        found.pop("vocab_size", None)
        found.pop("min_frequency", None)
    return [f"tokenizer.{k}: trained {v!r}, llmkit.yaml {asked[k]!r}"
            for k, v in found.items() if v != asked[k]]


def ensure_tokenizer(cfg: Config, log: Log = print,
                     show_progress: bool = True) -> tuple[Config, Tokenizer]:
    """Load the project's tokenizer (training it first if missing) and sync the vocab size."""
    path = cfg.path(cfg.tokenizer.path)
    if not path.exists():
        return train_project_tokenizer(cfg, log, show_progress)
    tok = Tokenizer.load(path)
    changed = stale_settings(cfg, tok)
    if changed:
        raise TokenizerError(
            f"{cfg.tokenizer.path} was trained with other settings than llmkit.yaml asks for "
            f"({'; '.join(changed)}); run `llmkit tokenizer` to train a new one (the data "
            f"cache is then rebuilt, and checkpoints of the old one no longer load), or set "
            f"those keys back in llmkit.yaml")
    return sync_vocab(cfg, tok, log), tok


def sync_vocab(cfg: Config, tok: Tokenizer, log: Log = print) -> Config:
    """Write the tokenizer's real size into `model.vocab_size` when the config disagrees."""
    old = cfg.model.vocab_size
    if old == tok.vocab_size:
        return cfg
    write_back(cfg.file, {"model.vocab_size": tok.vocab_size})
    log(f"model.vocab_size: {old if old is not None else 'null'} -> {tok.vocab_size} "
        f"(from {cfg.tokenizer.path})")
    return cfg.replace("model", vocab_size=tok.vocab_size)
