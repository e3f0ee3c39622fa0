"""The values a new project's `llmkit.yaml` is rendered with.

Nothing here retypes a number that config.py already owns: every key starts from the
config dataclasses' defaults, the model shape and optimizer keys come from the size preset
table (`config.PRESETS`), and only what a task's sample project needs differently (data
files, tokenizer, a short training schedule) is set in `TASK_SETTINGS`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llmkit.config import MODEL_PRESET_KEYS, PRESETS, SECTIONS, TRAINING_PRESET_KEYS
from llmkit.errors import ScaffoldError

TASKS = ("lm", "span")
SIZES = ("auto", *PRESETS)

# What differs per task from the config defaults. The schedules are sized for the sample
# data and the tiny preset on 2 CPU cores: a tiny step takes ~0.2 s there, so 300-400
# steps plus a few validations finish in one to two minutes.
TASK_SETTINGS: dict[str, dict[str, dict[str, Any]]] = {
    "lm": {
        "data": {"train": ["data/train.txt"], "val": [], "val_fraction": 0.1},
        # ~1 MB of text: a small vocabulary, so that every token is seen often enough
        # to train (a 32k vocabulary here would be mostly untrained embedding rows).
        "tokenizer": {"kind": "bpe", "vocab_size": 2000},
        "training": {"max_steps": 300, "warmup_steps": 30, "val_every_steps": 100,
                     "val_batches": 20, "checkpoint_every_steps": 100},
        "logging": {"sample_every_steps": 100, "health_every_steps": 100},
    },
    "span": {
        "data": {"train": ["data/train.jsonl"], "val": ["data/val.jsonl"],
                 "val_fraction": 0.1},
        # The lambda-calculus sample has a tiny alphabet: one token per character keeps
        # character and token spans aligned and the vocabulary at a few dozen symbols.
        "tokenizer": {"kind": "char", "vocab_size": 256},
        "training": {"max_steps": 400, "warmup_steps": 40, "val_every_steps": 100,
                     "val_batches": 20, "checkpoint_every_steps": 100},
        # Sample texts are up to ~120 characters, so a span can be that many tokens long.
        "span": {"max_span_tokens": 128},
        "logging": {"sample_every_steps": 100, "health_every_steps": 100},
    },
}


# A span project on the user's own data is natural-language text, unlike the symbolic
# sample: byte-level BPE (several characters per token, so texts fit the context), its
# vocabulary sized to the data as for LM projects.
OWN_SPAN_TOKENIZER = {"kind": "bpe", "vocab_size": 2000}
BPE_VOCAB_BY_TOKENS = ((500_000, 2000), (5_000_000, 8000))  # fewer tokens -> this vocabulary
BPE_VOCAB_LARGE = 16000


def own_span_settings(data_paths: Sequence[Path], size: str, preset: str
                      ) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Settings for a span project on the user's data, and notes on example lengths.

    `size` is what `--size` asked for, `preset` what it resolved to.
    BPE with a vocabulary that suits the data's size; with `--size auto`, a context
    (`model.block_size`) that holds 90% of the examples in one window (estimated lengths,
    see `sizing.estimate_example_lengths`); the notes give the length percentiles and how
    many windows the long examples take.
    """
    from llmkit.data.report import format_percentiles, length_percentiles
    from llmkit.sizing import (  # imports torch: only here
        choose_context,
        context_advice,
        estimate_example_lengths,
        estimate_train_tokens,
    )

    tokens = estimate_train_tokens(data_paths, "bpe")
    vocab = next((v for limit, v in BPE_VOCAB_BY_TOKENS if tokens < limit), BPE_VOCAB_LARGE)
    extra: dict[str, dict[str, Any]] = {"tokenizer": {**OWN_SPAN_TOKENIZER,
                                                      "vocab_size": vocab}}
    p = length_percentiles(estimate_example_lengths(data_paths, "bpe"))
    if p is None:
        return extra, []
    block = choose_context(p) if size == "auto" else PRESETS[preset]["block_size"]
    if size == "auto":
        extra["model"] = {"block_size": block}
    notes = [f"span examples are about {format_percentiles(p)} tokens long (estimated "
             f"before the tokenizer exists; `llmkit size` measures them)",
             *context_advice(p, block)]
    return extra, notes


def resolve_size(size: str, data_path: Path | Sequence[Path] | None,
                 task: str = "lm") -> tuple[str, dict[str, dict[str, Any]]]:
    """The size preset for `llmkit new --size SIZE`, and settings that go with it.

    "auto" with the user's data picks what `llmkit size` would recommend: the largest
    preset whose estimated tokens per parameter reach the sizing target, with dropout and
    weight decay that follow the data size (see llmkit/sizing.py, docs/sizing.md).
    "auto" on the sample data is "tiny", sized for it. Any other size must name a preset in
    `config.PRESETS`; its own regularisation defaults apply.
    """
    if size == "auto":
        if data_path is None:
            return "tiny", {}
        from llmkit.sizing import recommend_for_data  # imports torch: only here

        # the tokenizer the project gets on the user's data (own_span_settings for span)
        kind = (OWN_SPAN_TOKENIZER if task == "span" else TASK_SETTINGS[task]["tokenizer"])
        rec = recommend_for_data(data_path, kind=kind["kind"], task=task)
        extra: dict[str, dict[str, Any]] = {
            "model": {"dropout": rec.dropout},
            "training": {"weight_decay": rec.weight_decay},
        }
        return rec.preset, extra
    if size not in PRESETS:
        raise ScaffoldError(
            f"--size {size!r} is not a size preset; allowed: {', '.join(SIZES)} "
            f"(auto picks one for the data)"
        )
    return size, {}


def check_task(task: str) -> None:
    """Refuse a task llmkit cannot train."""
    if task not in TASKS:
        raise ScaffoldError(
            f"--task {task!r} is not a task; allowed: lm (a causal language model) or span "
            f"(predict a character span of each text)"
        )


def config_values(
    name: str, task: str, size: str, *, train: list[str] | None = None,
    val: list[str] | None = None, extra: dict[str, dict[str, Any]] | None = None,
) -> dict[str, dict[str, Any]]:
    """Every key of every config section, as the new project's `llmkit.yaml` sets it.

    `train` and `val` replace the sample data's files when the user brings their own data;
    `extra` holds settings chosen for that data (see `resolve_size`).
    """
    values = {sec: dataclasses.asdict(cls()) for sec, cls in SECTIONS.items()}
    preset = PRESETS[size]
    values["project"].update(name=name, task=task)
    values["model"].update(size=size, vocab_size=None,
                           **{k: preset[k] for k in MODEL_PRESET_KEYS})
    values["training"].update({k: preset[k] for k in TRAINING_PRESET_KEYS})
    for section, settings in TASK_SETTINGS[task].items():
        values[section].update(settings)
    if train is not None:
        values["data"].update(train=list(train), val=list(val or []))
    for section, settings in (extra or {}).items():
        values[section].update(settings)
    return values
