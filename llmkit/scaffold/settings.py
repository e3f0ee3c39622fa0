"""The values a new project's `llmkit.yaml` is rendered with.

Nothing here retypes a number that config.py already owns: every key starts from the
config dataclasses' defaults, the model shape and optimizer keys come from the size preset
table (`config.PRESETS`), and only what a task's sample project needs differently (data
files, tokenizer, a short training schedule) is set in `TASK_SETTINGS`.
"""

from __future__ import annotations

import dataclasses
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


def resolve_size(size: str, data_path: Path | None,
                 task: str = "lm") -> tuple[str, dict[str, dict[str, Any]]]:
    """The size preset for `llmkit new --size SIZE`, and settings that go with it.

    "auto" with the user's data picks what `llmkit size` would recommend: the largest
    preset whose estimated tokens per parameter reach the sizing target, with dropout and
    weight decay that follow the data size (see llmkit/trainer/sizing.py, docs/sizing.md).
    "auto" on the sample data is "tiny", sized for it. Any other size must name a preset in
    `config.PRESETS`; its own regularisation defaults apply.
    """
    if size == "auto":
        if data_path is None:
            return "tiny", {}
        from llmkit.sizing import recommend_for_data  # imports torch: only here

        kind = TASK_SETTINGS[task]["tokenizer"]["kind"]
        rec = recommend_for_data(data_path, kind=kind, task=task)
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
