"""Tiny projects trained for real (a few steps of the Lightning Trainer), shared by the
export and inference tests of one module."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import lm_text, span_lines

from llmkit.config import Config, load_config


def _write_project(root: Path, task: str, tokenizer: str, model: dict[str, Any]) -> Config:
    root.mkdir(parents=True)
    (root / "data").mkdir()
    if task == "lm":
        text = lm_text(60) + "héllo wörld — naïve café 🙂\n\n\ttabs  and  spaces\n"
        (root / "data" / "train.txt").write_text(text, encoding="utf-8")
    else:
        (root / "data" / "train.jsonl").write_text(span_lines(40), encoding="utf-8")
    raw = {
        "project": {"name": root.name, "task": task, "seed": 7},
        "data": {"train": ["data/train*"], "val_fraction": 0.2},
        "tokenizer": {"kind": tokenizer, "vocab_size": 300},
        "model": {"size": "custom", "n_layer": 2, "n_head": 2, "n_embd": 16,
                  "block_size": 32, "dropout": 0.0, **model},
        "training": {"batch_size": 4, "max_steps": 6, "lr": 3e-3, "warmup_steps": 0,
                     "val_every_steps": 3, "val_batches": 2, "num_workers": 0},
        "logging": {"log_every_steps": 1},
    }
    (root / "llmkit.yaml").write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return load_config(root)


@pytest.fixture(scope="module")
def trained_project(tmp_path_factory) -> Callable[..., Config]:
    """`trained_project(name, task="lm", tokenizer="bpe", **model) -> Config`: a project
    trained for 6 steps (cached per module and name)."""
    from llmkit.trainer.run import train

    made: dict[str, Config] = {}

    def make(name: str, task: str = "lm", tokenizer: str = "bpe", **model: Any) -> Config:
        if name not in made:
            root = tmp_path_factory.mktemp("export") / name
            _write_project(root, task, tokenizer, model)
            train(root, log=lambda _: None)
            made[name] = load_config(root)
        return made[name]

    return make
