"""Sizing: real parameter counts per preset, tokens per parameter, the recommendation."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from llmkit import sizing
from llmkit.config import PRESETS
from llmkit.errors import DataError
from llmkit.models import CausalLM, SpanModel
from llmkit.sizing import (
    TARGET_TOKENS_PER_PARAM,
    auto_size_for_data,
    estimate_train_tokens,
    preset_gpt,
    recommend_preset,
    regularisation_for,
    size_table,
)


def _numel(model: torch.nn.Module) -> tuple[int, int]:
    total = sum(p.numel() for p in model.parameters())  # a tied weight is yielded once
    emb = model.transformer.wte.weight.numel() + model.transformer.wpe.weight.numel()
    return total, total - emb


@pytest.mark.parametrize("task", ["lm", "span"])
def test_param_counts_are_the_real_models_numel(task: str) -> None:
    rows = {r.name: r for r in size_table(1_000_000, vocab_size=423, task=task)}
    assert list(rows) == ["tiny", "small", "base"]
    for name in PRESETS:
        gpt = preset_gpt(name, 423, task)
        cls = CausalLM if task == "lm" else SpanModel
        with torch.device("meta"):  # same code, no memory: base has 85M parameters
            model = cls(gpt)
        assert (rows[name].params, rows[name].non_embedding_params) == _numel(model)
    # and one model built for real, in case the meta device ever counted differently
    assert (rows["tiny"].params, rows["tiny"].non_embedding_params) == _numel(
        (CausalLM if task == "lm" else SpanModel)(preset_gpt("tiny", 423, task)))


def test_vocab_size_changes_the_total_but_not_tokens_per_param() -> None:
    small_vocab = size_table(1_000_000, vocab_size=65)
    big_vocab = size_table(1_000_000, vocab_size=8000)
    for a, b in zip(small_vocab, big_vocab, strict=True):
        assert b.params - a.params == (8000 - 65) * a.n_embd
        assert a.non_embedding_params == b.non_embedding_params
        assert a.tokens_per_param == b.tokens_per_param == 1_000_000 / a.non_embedding_params


def test_100k_tokens_get_tiny_with_strong_regularisation_and_more_data() -> None:
    rec = recommend_preset(100_000, vocab_size=2000, task="lm")
    assert rec.preset == "tiny"
    assert not rec.enough_data
    assert (rec.dropout, rec.weight_decay) == regularisation_for(rec.tokens_per_param)
    assert rec.dropout == 0.2
    tiny = rec.table[0]
    assert rec.tokens_needed == math.ceil(TARGET_TOKENS_PER_PARAM * tiny.non_embedding_params)
    assert "collect more data" in rec.format()
    # 4 epochs at the tiny preset's 16 x 128 tokens per step
    assert rec.max_steps == math.ceil(4 * 100_000 / (16 * 128))
    assert all(r.verdict.startswith("data-starved") for r in rec.table)


def test_billions_of_tokens_get_base_and_smaller_presets_are_undersized() -> None:
    rec = recommend_preset(3_000_000_000, vocab_size=32000, task="lm")
    assert rec.preset == "base" and rec.enough_data
    assert rec.dropout == 0.0
    verdicts = {r.name: r.verdict for r in rec.table}
    assert verdicts == {"tiny": "undersized: the data supports base",
                        "small": "undersized: the data supports base", "base": "fits"}


def test_the_largest_preset_at_or_above_the_target_wins() -> None:
    table = size_table(0, vocab_size=100)
    small = next(r for r in table if r.name == "small").non_embedding_params
    at_target = math.ceil(TARGET_TOKENS_PER_PARAM * small)
    assert recommend_preset(at_target, 100).preset == "small"
    assert recommend_preset(at_target - 1, 100).preset == "tiny"


def test_regularisation_is_stronger_for_scarcer_data() -> None:
    ratios = [0.1, 0.5, 2.0, 8.0, 50.0, 500.0]
    settings = [regularisation_for(r) for r in ratios]
    dropouts = [d for d, _ in settings]
    decays = [w for _, w in settings]
    assert dropouts == sorted(dropouts, reverse=True)
    assert decays == sorted(decays, reverse=True)
    assert settings[0][0] > settings[-1][0] and settings[0][1] > settings[-1][1]


def test_estimate_without_a_tokenizer(tmp_path: Path) -> None:
    text = "the king and the queen\n" * 2000  # ASCII: bytes == characters
    (tmp_path / "train.txt").write_text(text)
    n = len(text)
    assert estimate_train_tokens(tmp_path / "train.txt", "bpe") == int(n / 4 * 0.9)
    assert estimate_train_tokens(tmp_path / "train.txt", "char") == int(n * 0.9)
    # JSON Lines: only the text field counts, not the JSON around it or the span
    lines = [json.dumps({"text": "abcdefghij", "span": [0, 3]}) for _ in range(100)]
    folder = tmp_path / "spans"
    folder.mkdir()
    (folder / "train.jsonl").write_text("\n".join(lines) + "\n")
    (folder / ".cache").mkdir()
    (folder / ".cache" / "train.npy").write_bytes(b"\0" * 100_000)  # never counted
    assert estimate_train_tokens(folder, "char") == int(1000 * 0.9)
    with pytest.raises(DataError, match="does not exist"):
        estimate_train_tokens(tmp_path / "missing")


def test_auto_size_follows_the_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "train.txt").write_text("a little text\n" * 100)
    assert auto_size_for_data(tmp_path / "train.txt") == "tiny"
    monkeypatch.setattr(sizing, "estimate_train_tokens", lambda path, kind: 2_000_000_000)
    assert auto_size_for_data(tmp_path / "train.txt") == "base"
    monkeypatch.setattr(sizing, "estimate_train_tokens", lambda path, kind: 100_000_000)
    assert auto_size_for_data(tmp_path / "train.txt") == "small"
