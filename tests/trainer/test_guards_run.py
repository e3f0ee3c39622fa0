"""The training guards in real `llmkit train` runs: an oversized model on a tiny corpus is
flagged before and during training; a right-sized one on the Shakespeare sample is not."""

from __future__ import annotations

import json
import random
from pathlib import Path

from click.testing import CliRunner
from conftest import RunEvents

from llmkit.cli import cli
from llmkit.scaffold import create_project
from llmkit.trainer.run import train

STEPS = 150
COMMON = [f"training.max_steps={STEPS}", "training.val_every_steps=25", "training.val_batches=4",
          "training.warmup_steps=10", "training.batch_size=16", "model.block_size=32",
          "model.dropout=0.0", "model.size=custom", "tokenizer.kind=char",
          "logging.sample_every_steps=1000", "logging.health_every_steps=1000",
          "logging.log_every_steps=25", "training.checkpoint_every_steps=1000"]


def _texts(run_dir: Path, tag: str) -> list[str]:
    events = RunEvents(run_dir)
    return [text for _, text in events.texts(tag)] if tag in events.text_tags else []


def _random_docs(n: int, seed: int) -> str:
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz "
    return "\n\n".join("".join(rng.choice(letters) for _ in range(60)) for _ in range(n)) + "\n"


def test_oversized_model_on_tiny_corpus_is_warned_before_and_during(tmp_path: Path) -> None:
    root = create_project("tiny", tmp_path).root
    # 40 documents of random letters: nothing to learn but the documents themselves.
    (root / "data" / "train.txt").write_text(_random_docs(40, seed=1), encoding="utf-8")
    lines: list[str] = []
    result = train(root, [*COMMON, "model.n_layer=2", "model.n_head=4", "model.n_embd=128",
                          "training.lr=3e-3", "data.val_fraction=0.15"],
                   log=lines.append, progress=False)
    console = "\n".join(lines)
    assert "warning:" in console and "likely to memorise" in console  # pre-flight
    assert "train/val loss ratio" in console or "validation loss has risen" in console
    warnings = "\n".join(_texts(result.run_dir, "overfit/warnings"))
    assert warnings, "the overfitting warnings must reach TensorBoard too"
    assert "overfitting seen" in result.summary() or "overfit" in result.summary()


def test_right_sized_model_on_shakespeare_raises_no_overfitting_warning(tmp_path: Path) -> None:
    root = create_project("shakes", tmp_path).root  # the 1.1 MB sample
    lines: list[str] = []
    result = train(root, [*COMMON, "model.n_layer=2", "model.n_head=2", "model.n_embd=32",
                          "training.lr=3e-3"], log=lines.append, progress=False)
    console = "\n".join(lines)
    assert "likely to memorise" not in console
    assert "overfit" not in console.replace("no overfitting seen", "")
    assert _texts(result.run_dir, "overfit/warnings") == []
    assert "no overfitting seen" in result.summary()


def test_smoke_json_reports_loss_near_ln_vocab(tmp_path: Path) -> None:
    root = create_project("smoke", tmp_path).root
    out = CliRunner().invoke(cli, ["-C", str(root), "smoke", "--json", "-o",
                                   "tokenizer.kind=char"])
    assert out.exit_code == 0, out.output
    report = json.loads(out.stdout)
    for key in ("vocab_size", "ce", "ppl", "bits_per_token", "per_token_losses"):
        assert key in report
    assert report["init_ok"] is True
    assert abs(report["ce"] - report["expected_ce"]) / report["expected_ce"] < 0.1
