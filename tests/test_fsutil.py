from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from llmkit.fsutil import atomic_path, atomic_write_bytes, atomic_write_text


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_write_text_creates_and_replaces(tmp_path: Path) -> None:
    target = tmp_path / "llmkit.yaml"
    atomic_write_text(target, "a: 1\n")
    atomic_write_text(target, "a: 2 # é\n")
    assert target.read_text(encoding="utf-8") == "a: 2 # é\n"
    assert os.listdir(tmp_path) == ["llmkit.yaml"]


def test_write_bytes(tmp_path: Path) -> None:
    atomic_write_bytes(tmp_path / "x.bin", b"\x00\xff")
    assert (tmp_path / "x.bin").read_bytes() == b"\x00\xff"


def test_failure_keeps_old_file_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "ckpt.pt"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="disk full"), atomic_path(target) as tmp:
        tmp.write_text("half a fi")
        raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["ckpt.pt"]


def test_failed_rename_leaves_no_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(src: object, dst: object) -> None:
        raise OSError("cross-device link")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="cross-device"):
        atomic_write_text(tmp_path / "tokenizer.json", "{}")
    assert os.listdir(tmp_path) == []


def test_atomic_path_for_writers_that_open_the_path_themselves(tmp_path: Path) -> None:
    target = tmp_path / "data.npy"
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp != target  # same folder: rename stays atomic
        assert not target.exists()
        with open(tmp, "w") as f:
            f.write("written by someone else")
    assert target.read_text() == "written by someone else"


def test_permissions_follow_umask_for_new_and_are_kept_for_replaced(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "new.txt", "x")
        assert _mode(tmp_path / "new.txt") == 0o644  # not mkstemp's 0o600
        private = tmp_path / "private.txt"
        private.write_text("secret")
        private.chmod(0o600)
        atomic_write_text(private, "still secret")
        assert _mode(private) == 0o600
    finally:
        os.umask(umask)
