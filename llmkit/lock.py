"""One llmkit command at a time on a project: a lock the operating system releases."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from llmkit.config import Config
from llmkit.errors import RunLockedError

try:
    import fcntl
except ImportError:  # Windows: no lock (flock is POSIX)
    fcntl = None  # type: ignore[assignment]


def lock_path(cfg: Config) -> Path:
    """`<logging.dir>/.<project.name>.lock`: next to the run folder it guards, not in it."""
    return cfg.path(cfg.logging.dir) / f".{cfg.project.name}.lock"


@contextmanager
def run_lock(cfg: Config) -> Iterator[None]:
    """Hold the project's lock: one `llmkit train`, `prepare` or `tokenizer` at a time.

    Two of them on one project would race on the tokenizer, the cache, the run folder and
    `last.ckpt` (and a preparation cleans the temporary files a killed one left, which
    must not be those of another one still writing). The lock is an `flock` on
    `lock_path(cfg)`: the operating system drops it when the process ends, however it
    ends, so it is never stale. The file holds the holder's pid, for the message the
    second process gets.

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
                f"another llmkit command (pid {holder}) is already working on this project "
                f"({cfg.root}); wait for it to finish, or stop it (Ctrl-C in its terminal, "
                f"or kill {holder}) and run this again") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock
