"""The tokenizer as the single source of truth for the vocabulary (DESIGN.md, problem 1).

`ensure_tokenizer` trains the tokenizer when it is missing and writes its real size into
`model.vocab_size` of `llmkit.yaml` (comments and layout kept, file replaced atomically),
saying what changed. Every model build goes through it, so config and tokenizer agree.
"""

from __future__ import annotations

from llmkit.config import Config, write_back
from llmkit.console import Log
from llmkit.data.sources import resolve_sources
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
    log(f"tokenizer: {tok.vocab_size} tokens -> {tokenizer.path}")
    return sync_vocab(cfg, tok, log), tok


def ensure_tokenizer(cfg: Config, log: Log = print,
                     show_progress: bool = True) -> tuple[Config, Tokenizer]:
    """Load the project's tokenizer (training it first if missing) and sync the vocab size."""
    path = cfg.path(cfg.tokenizer.path)
    if not path.exists():
        return train_project_tokenizer(cfg, log, show_progress)
    tok = Tokenizer.load(path)
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
