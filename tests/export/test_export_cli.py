"""`llmkit export` as a user runs it: a subprocess of the installed CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("transformers")

LLMKIT = str(Path(sys.executable).with_name("llmkit"))


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([LLMKIT, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env=env)


def test_export_verify_then_refusals(trained_project, tmp_path):
    cfg = trained_project("cli", tokenizer="bpe")
    root = cfg.root
    proc = run("export", "--verify", cwd=root)
    assert proc.returncode == 0, proc.stderr
    assert "loads with transformers as GPT2LMHeadModel" in proc.stdout
    assert "verified with transformers" in proc.stdout and "same ids" in proc.stdout
    assert (root / "export" / "model.safetensors").is_file()

    again = run("export", cwd=root)  # export/ exists now
    assert again.returncode == 1
    assert again.stderr.strip().splitlines() == [
        f"Error: --out {root / 'export'} is a folder that is not empty; choose another "
        f"folder or pass --force to replace it"]
    assert run("export", "--force", cwd=root).returncode == 0

    # a checkpoint next to another tokenizer: refused before anything is written
    (root / "data" / "train.txt").write_text("zebra quokka " * 300, encoding="utf-8")
    retrain = run("tokenizer", cwd=root)
    assert retrain.returncode == 0, retrain.stderr
    proc = run("export", "--out", str(tmp_path / "other"), cwd=root)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "tokenizer" in lines[0] and "vocab size" in lines[0], lines
    assert not (tmp_path / "other").exists()
