"""`llmkit smoke`: the loss at initialisation is ln V, ids come from the real vocabulary."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from llmkit.commands.smoke import SmokeReport, _random_batch, run_smoke
from llmkit.config import Config, config_from_dict
from llmkit.errors import LlmkitError
from llmkit.tokenizer import Tokenizer, train_tokenizer

KEYS = {"vocab_size", "params", "non_embedding_params", "ce", "ppl", "bits_per_token",
        "expected_ce", "init_ok", "per_token_losses", "seconds_per_step", "peak_memory_mb",
        "device"}


def _char_tokenizer(root: Path, vocab_size: int) -> Tokenizer:
    """A char tokenizer of exactly `vocab_size` ids: 4 specials, newline, and CJK letters."""
    (root / "data").mkdir(parents=True, exist_ok=True)
    letters = "".join(chr(0x4E00 + i) for i in range(vocab_size - 5))
    (root / "data" / "train.txt").write_text(letters + "\n", encoding="utf-8")
    tok = train_tokenizer([root / "data" / "train.txt"], root / "tokenizer" / "tokenizer.json",
                          kind="char", vocab_size=256, show_progress=False)
    assert tok.vocab_size == vocab_size
    return tok


def _cfg(root: Path, size: str, vocab_size: int, task: str = "lm") -> Config:
    raw = {"project": {"task": task, "seed": 3}, "tokenizer": {"kind": "char"},
           "model": {"size": size, "vocab_size": vocab_size}}
    return config_from_dict(raw, root)


@pytest.mark.parametrize("size", ["tiny", "small"])
@pytest.mark.parametrize("vocab_size", [65, 2000])
def test_loss_at_initialisation_is_ln_vocab(tmp_path: Path, size: str, vocab_size: int) -> None:
    _char_tokenizer(tmp_path, vocab_size)
    report = run_smoke(_cfg(tmp_path, size, vocab_size), batch_size=2, seq_len=32, steps=1,
                       log=lambda _: None)
    assert report.vocab_size == vocab_size
    assert report.expected_ce == pytest.approx(math.log(vocab_size))
    assert abs(report.ce - math.log(vocab_size)) / math.log(vocab_size) < 0.10
    assert abs(report.init_ce - math.log(vocab_size)) / math.log(vocab_size) < 0.10
    assert report.init_ok and report.message.endswith(": ok")
    d = report.to_dict()
    assert KEYS <= set(d)
    assert d["ppl"] == pytest.approx(math.exp(d["ce"]))
    assert d["bits_per_token"] == pytest.approx(d["ce"] / math.log(2))
    assert len(d["per_token_losses"]) == 2 and len(d["per_token_losses"][0]) == 32
    assert d["seconds_per_step"] > 0 and d["peak_memory_mb"] >= 0
    assert d["device"] in ("cpu", "cuda", "cuda:0")
    assert f"vocabulary {vocab_size:,}" in report.format()


def test_random_ids_come_from_the_real_vocabulary() -> None:
    for vocab_size in (65, 2000):
        gen = torch.Generator().manual_seed(0)
        ids = _random_batch("lm", vocab_size, 64, 128, gen)["ids"]
        assert ids.shape == (64, 129)
        assert int(ids.min()) == 0 and int(ids.max()) == vocab_size - 1  # the whole range


def test_span_model_loss_at_initialisation_is_ln_seq_len(tmp_path: Path) -> None:
    _char_tokenizer(tmp_path, 65)
    report = run_smoke(_cfg(tmp_path, "tiny", 65, task="span"), batch_size=3, seq_len=24,
                       steps=1, log=lambda _: None)
    assert report.expected_ce == pytest.approx(math.log(24))
    assert report.init_ok, report.message
    assert abs(report.ce - math.log(24)) / math.log(24) < 0.10  # random gold spans
    assert len(report.per_token_losses) == 3  # one loss per example
    # one short text has only two gold positions: the check must not hinge on them
    short = run_smoke(_cfg(tmp_path, "tiny", 65, task="span"), text="一丁七万丈三上下", steps=1,
                      log=lambda _: None)
    assert short.seq_len == 10 and short.init_ok, short.message


def test_text_runs_through_the_tokenizer_and_is_cropped(tmp_path: Path) -> None:
    tok = _char_tokenizer(tmp_path, 65)
    cfg = _cfg(tmp_path, "tiny", 65)
    text = "".join(chr(0x4E00 + i) for i in range(10))
    report = run_smoke(cfg, text=text, steps=1, log=lambda _: None)
    assert (report.batch_size, report.seq_len) == (1, 11)  # BOS + 10 characters + EOS - 1
    assert report.notes == []
    long = run_smoke(cfg, text=text * 20, seq_len=16, steps=1, log=lambda _: None)
    assert long.seq_len == 16
    assert long.notes == ["the text is 202 tokens with BOS and EOS; cropped to 17 (the "
                          "model's block size is 16)"]
    assert tok.vocab_size == long.vocab_size


def test_bad_sizes_are_user_errors(tmp_path: Path) -> None:
    _char_tokenizer(tmp_path, 65)
    cfg = _cfg(tmp_path, "tiny", 65)
    with pytest.raises(LlmkitError, match=r"--seq-len 129: allowed 1 to model.block_size \(128\)"):
        run_smoke(cfg, seq_len=129, log=lambda _: None)
    with pytest.raises(LlmkitError, match="--batch-size 0"):
        run_smoke(cfg, batch_size=0, log=lambda _: None)


def test_a_loss_far_from_ln_vocab_is_flagged_as_an_init_bug() -> None:
    report = SmokeReport(task="lm", size="tiny", device="cpu", precision="32-true",
                         vocab_size=65, params=1, non_embedding_params=1, batch_size=1,
                         seq_len=1, ce=6.0, expected_ce=math.log(65), init_ce=6.0,
                         per_token_losses=[[6.0]],
                         seconds_per_step=0.1, peak_memory_mb=0.0, memory_note="", source="")
    assert not report.init_ok
    assert not report.to_dict()["init_ok"]
    assert "likely initialisation bug" in report.message
