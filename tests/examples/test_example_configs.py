"""The shipped examples' configs load as they are: a user's first `llmkit train` in an
example folder must not stop at a config error (their data is generated or shipped)."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmkit.config import load_config

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize("name", ["lambda_spans", "shakespeare"])
def test_example_config_loads(name: str) -> None:
    cfg = load_config(EXAMPLES / name, [])
    assert cfg.project.name == name
    assert cfg.model.arch in ("gpt2", "llama", "qwen3")  # resolved: set or from the preset
    assert cfg.training.optimizer in ("adamw", "muon")
