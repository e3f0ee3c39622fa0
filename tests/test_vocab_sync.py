"""Vocabulary sync: the tokenizer's real size goes into llmkit.yaml, comments untouched."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmkit.config import load_config
from llmkit.scaffold import create_project
from llmkit.vocab_sync import ensure_tokenizer, train_project_tokenizer

TINY_CORPUS = "the cat sat on the mat.\n\nthe dog sat on the log.\n\nécoute 中文 🙂\n" * 20


def _comment_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.lstrip().startswith("#") or " #" in line
            and "vocab_size" not in line]


@pytest.mark.parametrize("kind", ["bpe", "char"])
def test_requested_32000_becomes_the_real_size_with_comments_intact(tmp_path: Path,
                                                                    kind: str) -> None:
    root = create_project("p", tmp_path).root
    (root / "data" / "train.txt").write_text(TINY_CORPUS, encoding="utf-8")
    cfg_file = root / "llmkit.yaml"
    before = cfg_file.read_text(encoding="utf-8")
    cfg = load_config(root, ["tokenizer.vocab_size=32000", f"tokenizer.kind={kind}"])
    messages: list[str] = []
    synced, tok = train_project_tokenizer(cfg, log=messages.append, show_progress=False)
    after = cfg_file.read_text(encoding="utf-8")

    assert tok.vocab_size < 1000  # a tiny corpus cannot fill 32000 ids
    assert load_config(root).model.vocab_size == tok.vocab_size == synced.model.vocab_size
    assert f"model.vocab_size: null -> {tok.vocab_size} (from tokenizer/tokenizer.json)" in messages
    # Every line but the vocab_size one is byte for byte the same, comments included.
    changed = [(a, b) for a, b in zip(before.splitlines(), after.splitlines(), strict=True)
               if a != b]
    assert len(changed) == 1 and changed[0][1].lstrip().startswith("vocab_size:")
    assert _comment_lines(before) == _comment_lines(after)


def test_a_config_that_disagrees_is_resynced_with_both_numbers(tmp_path: Path) -> None:
    root = create_project("p", tmp_path).root
    (root / "data" / "train.txt").write_text(TINY_CORPUS, encoding="utf-8")
    cfg = load_config(root, ["tokenizer.kind=char"])
    _, tok = train_project_tokenizer(cfg, log=lambda m: None, show_progress=False)
    stale = load_config(root, ["model.vocab_size=32000", "tokenizer.kind=char"])
    messages: list[str] = []
    synced, _ = ensure_tokenizer(stale, log=messages.append, show_progress=False)
    assert messages == [f"model.vocab_size: 32000 -> {tok.vocab_size} "
                        f"(from tokenizer/tokenizer.json)"]
    assert synced.model.vocab_size == tok.vocab_size
    # In sync: nothing to say, nothing written.
    mtime = (root / "llmkit.yaml").stat().st_mtime_ns
    messages.clear()
    ensure_tokenizer(load_config(root), log=messages.append, show_progress=False)
    assert messages == [] and (root / "llmkit.yaml").stat().st_mtime_ns == mtime
