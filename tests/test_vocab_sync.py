"""Vocabulary sync: the tokenizer's real size goes into llmkit.yaml, comments untouched."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmkit.config import load_config
from llmkit.scaffold import create_project
from llmkit.tokenizer import Tokenizer
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
    # (the same kind as trained: a changed kind is refused, see below)
    ensure_tokenizer(load_config(root, ["tokenizer.kind=char"]), log=messages.append,
                     show_progress=False)
    assert messages == [] and (root / "llmkit.yaml").stat().st_mtime_ns == mtime


def _quiet(_: str) -> None:
    pass


def test_a_changed_kind_or_size_is_refused_until_llmkit_tokenizer(tmp_path: Path) -> None:
    from llmkit.errors import TokenizerError

    root = create_project("p", tmp_path).root
    (root / "data" / "train.txt").write_text(TINY_CORPUS, encoding="utf-8")
    cfg = load_config(root, ["tokenizer.kind=char"])
    _, char_tok = ensure_tokenizer(cfg, log=_quiet, show_progress=False)
    assert (root / "tokenizer" / "tokenizer.settings.json").is_file()
    assert ensure_tokenizer(cfg, log=_quiet)[1].hash == char_tok.hash  # unchanged: reused

    # char -> bpe (and its size): refused, naming both values; the file is left alone.
    bpe = load_config(root, ["tokenizer.kind=bpe", "tokenizer.vocab_size=300"])
    with pytest.raises(TokenizerError, match=r"tokenizer\.kind: trained 'char', llmkit\.yaml "
                                             r"'bpe'.*run `llmkit tokenizer`"):
        ensure_tokenizer(bpe, log=_quiet)
    assert Tokenizer.load(root / "tokenizer" / "tokenizer.json").hash == char_tok.hash
    # `llmkit tokenizer` trains the new one; then it is fresh.
    train_project_tokenizer(bpe, log=_quiet, show_progress=False)
    assert ensure_tokenizer(bpe, log=_quiet)[1].kind == "bpe"

    bigger = load_config(root, ["tokenizer.kind=bpe", "tokenizer.vocab_size=400"])
    with pytest.raises(TokenizerError, match=r"tokenizer\.vocab_size: trained 300, "
                                             r"llmkit\.yaml 400"):
        ensure_tokenizer(bigger, log=_quiet)
    renamed = load_config(root, ["tokenizer.kind=bpe", "tokenizer.vocab_size=300",
                                 "tokenizer.eos=<end>"])
    with pytest.raises(TokenizerError, match=r"tokenizer\.eos: trained '<eos>', llmkit\.yaml "
                                             r"'<end>'"):
        ensure_tokenizer(renamed, log=_quiet)


def test_a_settings_record_of_another_tokenizer_is_not_trusted(tmp_path: Path) -> None:
    import json

    root = create_project("p", tmp_path).root
    (root / "data" / "train.txt").write_text(TINY_CORPUS, encoding="utf-8")
    cfg = load_config(root, ["tokenizer.kind=bpe", "tokenizer.vocab_size=300"])
    ensure_tokenizer(cfg, log=_quiet, show_progress=False)
    record = root / "tokenizer" / "tokenizer.settings.json"
    data = json.loads(record.read_text())
    record.write_text(json.dumps({**data, "tokenizer_hash": "0" * 64, "vocab_size": 999}))
    # The record no longer describes the file: it is ignored, not believed.
    assert ensure_tokenizer(cfg, log=_quiet)[1].kind == "bpe"
