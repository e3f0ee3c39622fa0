"""The run folder: its lock, which run `--resume` continues, from which checkpoint, and
the config copy."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

from llmkit.checkpoint import (
    LAST,
    check_compatible,
    latest_run,
    load_checkpoint,
    run_version,
    runs_root,
)
from llmkit.config import Config
from llmkit.errors import CheckpointError, RunLockedError
from llmkit.fsutil import atomic_write_bytes, atomic_write_text
from llmkit.models import GPTConfig
from llmkit.tokenizer import Tokenizer

try:
    import fcntl
except ImportError:  # Windows: no lock (flock is POSIX)
    fcntl = None  # type: ignore[assignment]

def lock_path(cfg: Config) -> Path:
    """`<logging.dir>/.<project.name>.lock`: next to the run folder it guards, not in it."""
    return cfg.path(cfg.logging.dir) / f".{cfg.project.name}.lock"


@contextmanager
def run_lock(cfg: Config) -> Iterator[None]:
    """Hold the lock of the project's runs: one `llmkit train` at a time.

    Two trainings of one project would race on the tokenizer, the cache, the run folder and
    `last.ckpt`. The lock is an `flock` on `lock_path(cfg)`: the operating system drops it
    when the process ends, however it ends, so it is never stale. The file holds the
    holder's pid, for the message the second process gets.

    Raises:
        RunLockedError: another process holds the lock (the message names its pid).
    """
    path = lock_path(cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fcntl is None:
        yield
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            raise RunLockedError(
                f"another `llmkit train` (pid {holder}) is already training this project "
                f"({runs_root(cfg)}); wait for it to finish, or stop it (Ctrl-C in its "
                f"terminal, or kill {holder}) and run this again") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def run_to_resume(cfg: Config) -> Path:
    """The newest run, which must have a `last.ckpt`."""
    run = latest_run(cfg)
    if run is None or not (run / "checkpoints" / LAST).is_file():
        raise CheckpointError(f"nothing to resume: no {LAST} under {runs_root(cfg)}; start "
                              f"with `llmkit train`")
    return run


def resume_point(run: Path, cfg: Config, gpt: GPTConfig, tok: Tokenizer) -> tuple[Path, int]:
    """The run's last checkpoint and version, checked against the current model and tokenizer.

    Called before the data is prepared: a checkpoint of another tokenizer is refused
    before the corpus is encoded again with the new one.
    """
    ckpt = run / "checkpoints" / LAST
    meta = load_checkpoint(ckpt).get("llmkit", {})
    check_compatible(meta, cfg, gpt, tok, ckpt)
    return ckpt, run_version(run)


def save_run_config(cfg: Config, run_dir: Path) -> None:
    """A copy of the user's file and of the resolved config go into every run folder."""
    run_dir.mkdir(parents=True, exist_ok=True)
    # Atomic: a full disk leaves no empty copy behind (fsutil says which file failed).
    atomic_write_bytes(run_dir / "llmkit.yaml", cfg.file.read_bytes())
    resolved = yaml.safe_dump(cfg.to_dict(), sort_keys=False)
    atomic_write_text(run_dir / "config.resolved.yaml", resolved)
