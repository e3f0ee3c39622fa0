"""Pre-flight warnings: fire on made-up reports with their numbers, stay quiet on sound ones."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from llmkit.config import Config, config_from_dict
from llmkit.models import CausalLM
from llmkit.preflight import preflight_warnings
from llmkit.sizing import preset_gpt

TINY_NON_EMB = 787_584  # 4 blocks of 12 * 128^2 + 2 * 128 LayerNorm weights, plus ln_f


def _cfg(tmp_path: Path, size: str = "tiny", task: str = "lm", vocab: int = 8000,
         kind: str = "bpe", **training: Any) -> Config:
    raw = {"project": {"task": task}, "tokenizer": {"kind": kind},
           "model": {"size": size, "vocab_size": vocab},
           "training": {"max_steps": 100, **training}}
    return config_from_dict(raw, tmp_path)


def _report(**kw: Any) -> dict[str, Any]:
    """A healthy LM report: 10M tokens, the whole vocabulary in use, no overlap."""
    base = {"task": "lm", "documents_train": 5000, "documents_val": 500,
            "tokens_train": 10_000_000, "tokens_val": 1_000_000, "vocab_size": 8000,
            "vocab_used": 8000, "overlap": 0.01, "overlap_windows": 1000}
    base.update(kw)
    return base


def _total(size: str, vocab: int) -> int:
    return sum(p.numel() for p in CausalLM(preset_gpt(size, vocab)).parameters())


def test_a_healthy_report_gives_no_warning(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    assert preflight_warnings(cfg, preset_gpt("tiny", 8000), _report()) == []


def test_too_few_tokens_per_parameter_names_the_numbers_and_asks_for_data(tmp_path) -> None:
    cfg = _cfg(tmp_path, max_steps=400)  # 400 x 16 x 128 tokens: 8 passes over 100k
    (line,) = preflight_warnings(cfg, preset_gpt("tiny", 8000), _report(tokens_train=100_000))
    assert line.startswith("warning: 100,000 training tokens for 787,584 non-embedding "
                           "parameters is 0.127 tokens per parameter (below 5)")
    assert f"collect more data (~{math.ceil(5 * TINY_NON_EMB):,} training tokens" in line
    assert "model.dropout 0.2, training.weight_decay 0.2" in line
    assert "\n" not in line


def test_too_few_tokens_per_parameter_suggests_a_smaller_preset_by_name(tmp_path) -> None:
    cfg = _cfg(tmp_path, size="small", max_steps=10_000)  # 8 passes over 10M tokens
    (line,) = preflight_warnings(cfg, preset_gpt("small", 8000), _report())
    assert "10,000,000 training tokens for 10,621,824 non-embedding parameters is 0.941" in line
    assert f"use model.size: tiny ({10_000_000 / TINY_NON_EMB:.3g} tokens per parameter)" in line


def test_a_short_run_on_scarce_data_is_a_note_not_a_memorisation_warning(tmp_path) -> None:
    cfg = _cfg(tmp_path, max_steps=100)  # 100 x 16 x 128 tokens: 2 passes over 100k
    (line,) = preflight_warnings(cfg, preset_gpt("tiny", 8000), _report(tokens_train=100_000))
    assert line.startswith("note: 100,000 training tokens for 787,584 non-embedding parameters")
    assert "fine for this run (2.0 passes over the data)" in line
    assert "likely to memorise" not in line


def test_unused_vocabulary_reports_id_and_parameter_shares(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    gpt = preset_gpt("tiny", 8000)
    (line,) = preflight_warnings(cfg, gpt, _report(vocab_used=2000))
    total = _total("tiny", 8000)
    dead = 6000 * 128
    assert line.startswith("warning: 6,000 of 8,000 token ids (75.0%) never occur")
    assert f"{dead:,} of {total:,} model parameters ({dead / total:.1%})" in line
    assert "tokenizer.vocab_size: 2000" in line and "tokenizer.kind: char" in line


def test_a_few_unused_special_ids_of_a_tiny_alphabet_are_fine(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, vocab=8, kind="char")
    report = _report(vocab_size=8, vocab_used=5, tokens_train=10_000_000)
    assert preflight_warnings(cfg, preset_gpt("tiny", 8), report) == []


def test_validation_overlap_is_reported_with_its_share(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    (line,) = preflight_warnings(cfg, preset_gpt("tiny", 8000),
                                 _report(overlap=0.123, overlap_windows=4321))
    assert line.startswith("warning: 12.3% of validation text (4,321 windows checked) also "
                           "occurs verbatim in the training text")
    assert "dedup" in line and "split by document" in line
    for quiet in (0.04, None):
        assert preflight_warnings(cfg, preset_gpt("tiny", 8000), _report(overlap=quiet)) == []


def test_span_duplicates_are_reported(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, task="span", vocab=8000)
    gpt = preset_gpt("tiny", 8000, "span")
    report = _report(task="span", overlap=None, documents_val=20, duplicate_val_texts=7)
    (line,) = preflight_warnings(cfg, gpt, report)
    assert line.startswith("warning: 7 of 20 validation examples (35.0%) have a text or "
                           "context that is also in the training data")
    assert 'the same "group"' in line


def test_too_many_epochs_names_the_passes_and_a_step_count(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, max_steps=2000)  # tiny: 16 sequences x 128 tokens per step
    lines = preflight_warnings(cfg, preset_gpt("tiny", 8000), _report(tokens_train=200_000))
    (line,) = [w for w in lines if "passes" in w]
    passes = 2000 * 2048 / 200_000
    assert (f"training.max_steps 2,000 x 2,048 tokens per step is {passes:.0f} passes over "
            f"200,000 training tokens") in line
    assert f"~{math.ceil(4 * 200_000 / 2048):,} (4 epochs)" in line


@pytest.mark.parametrize("size", ["tiny", "small"])
def test_every_warning_is_one_line_starting_with_warning(tmp_path: Path, size: str) -> None:
    cfg = _cfg(tmp_path, size=size, max_steps=100_000)
    report = _report(tokens_train=50_000, vocab_used=100, overlap=0.5)
    lines = preflight_warnings(cfg, preset_gpt(size, 8000), report)
    assert len(lines) == 4
    assert all(w.startswith("warning: ") and "\n" not in w for w in lines)
