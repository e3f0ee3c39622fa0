"""Faults around a training run: a second `llmkit train` on the same project, a full
disk, and `--resume` next to another tokenizer. Each ends in one line that says what
happened, and leaves nothing of the user's changed and no empty or temporary files."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from llmkit.cli import cli
from llmkit.config import Config
from llmkit.errors import LlmkitError, VocabMismatchError
from llmkit.trainer.run import train

LLMKIT = Path(sys.executable).with_name("llmkit")


def _quiet(_: str) -> None:
    pass


def _files(root: Path) -> dict[str, int]:
    """Every file under `root` with its size."""
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*") if p.is_file()}


def test_a_second_train_is_refused_naming_the_first_ones_pid(
        tiny_project: Callable[..., Config]) -> None:
    cfg = tiny_project(config={"training": {"max_steps": 100000, "val_every_steps": 1000,
                                            "checkpoint_every_steps": 1000}})
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    first = subprocess.Popen([str(LLMKIT), "-C", str(cfg.root), "train"], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 240
        seen = []
        while time.monotonic() < deadline:  # the first one is training once it names its run
            line = first.stdout.readline()
            seen.append(line)
            if line.startswith("run: ") or first.poll() is not None:
                break
        assert first.poll() is None, "".join(seen)

        second = subprocess.run([str(LLMKIT), "-C", str(cfg.root), "train"], env=env,
                                capture_output=True, text=True, timeout=240)
        assert second.returncode == 1, second.stdout + second.stderr
        assert "Traceback" not in second.stderr
        [line] = second.stderr.strip().splitlines()
        assert f"another llmkit command (pid {first.pid}) is already working" in line, line
        assert first.poll() is None  # the first one was not disturbed
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=120)
    # Once the first one has ended (SIGTERM saved a checkpoint), training goes on.
    step = first_steps(cfg)
    resumed = train(cfg.root, resume=True, stop_at=step + 1, log=_quiet, progress=False)
    assert resumed.global_step == step + 1


def first_steps(cfg: Config) -> int:
    """The step of the newest run's last.ckpt."""
    import torch

    [ckpt] = (cfg.root / "runs").glob("*/version_0/checkpoints/last.ckpt")
    return int(torch.load(ckpt, weights_only=True)["global_step"])


def test_the_lock_is_held_only_while_training(tiny_project: Callable[..., Config]) -> None:
    from llmkit.lock import run_lock

    cfg = tiny_project()
    with run_lock(cfg):
        with pytest.raises(LlmkitError, match=f"pid {os.getpid()}"):
            train(cfg.root, log=_quiet, progress=False)
    train(cfg.root, stop_at=1, log=_quiet, progress=False)  # released


def _disk_full_after(n_ok: int) -> Callable[[int], None]:
    """An os.fsync that succeeds n_ok times, then reports a full disk (as NFS or a
    delayed-allocation filesystem can, when the data finally has to go somewhere)."""
    real = os.fsync
    calls = {"n": 0}

    def fsync(fd: int) -> None:
        calls["n"] += 1
        if calls["n"] > n_ok:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(fd)
    return fsync


@pytest.mark.parametrize("n_ok", [0, 1, 2, 3, 6, 7, 9])
def test_a_full_disk_is_one_line_and_changes_nothing(tiny_project: Callable[..., Config],
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    n_ok: int) -> None:
    # The disk fills up at a different write each time: the tokenizer (0), its settings
    # record (1), the vocabulary write-back into llmkit.yaml (2), the cache files (3),
    # meta.json (6), the run folder's copy of llmkit.yaml (7), a checkpoint (9).
    cfg = tiny_project(config={"training": {"checkpoint_every_steps": 1}})
    config_before = cfg.file.read_bytes()
    data_before = _files(cfg.root / "data")
    monkeypatch.setattr(os, "fsync", _disk_full_after(n_ok))

    result = CliRunner().invoke(cli, ["-C", str(cfg.root), "train"])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    # (after the progress bar's last line when the disk fills up during training)
    [line] = [x.split("Error: ", 1)[1] for x in result.output.splitlines() if "Error: " in x]
    assert line.startswith("no space left on the device while writing "), line
    assert "nothing was changed" in line
    written = Path(line.split("while writing ")[1].split(";")[0])
    assert written.is_relative_to(cfg.root)
    assert written.name == {0: "tokenizer.json", 1: "tokenizer.settings.json",
                            2: "llmkit.yaml", 3: "skipped.jsonl", 6: "meta.json",
                            7: "llmkit.yaml", 9: "last.ckpt"}[n_ok], line

    after = cfg.file.read_bytes()
    # The vocabulary sync is the only change llmkit makes to llmkit.yaml; a failed one
    # leaves it as it was.
    assert after == config_before or b"vocab_size: " in after
    files = _files(cfg.root)
    assert not [f for f in files if f.endswith(".tmp")], files
    # (skipped.jsonl is empty when no line was skipped; the lock file holds no data)
    assert not [f for f, size in files.items()
                if size == 0 and not f.endswith((".lock", "skipped.jsonl"))], files
    assert {f: s for f, s in _files(cfg.root / "data").items()
            if not f.startswith(".cache")} == data_before


def test_resume_with_another_tokenizer_is_refused_before_encoding(
        tiny_project: Callable[..., Config], monkeypatch: pytest.MonkeyPatch) -> None:
    import llmkit.trainer.run as run_module

    cfg = tiny_project()
    train(cfg.root, stop_at=2, log=_quiet, progress=False)
    data = cfg.root / "data" / "train.txt"
    data.write_text(data.read_text(encoding="utf-8") + "\nXYZ QJV 0123456789\n",
                    encoding="utf-8")
    cfg.path(cfg.tokenizer.path).unlink()

    encoded: list[str] = []
    real_prepare = run_module.prepare_data

    def prepare(*args, **kwargs):
        encoded.append("prepare")
        return real_prepare(*args, **kwargs)

    monkeypatch.setattr(run_module, "prepare_data", prepare)
    with pytest.raises(VocabMismatchError):
        train(cfg.root, resume=True, log=_quiet, progress=False)
    assert encoded == []  # refused before the corpus was encoded again

