"""Atomic file writes: a crash or an error never leaves half a file in place.

Every file the user owns (llmkit.yaml, the tokenizer, prepared data, checkpoints) is
written to a temporary file in the same folder and renamed over the target with
`os.replace`, which is atomic on POSIX and Windows when both paths are on one filesystem
(hence "same folder", never /tmp).
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from llmkit.errors import DiskFullError

# Below this much free space a failed write is reported as a full disk: torch.save says
# only "file write failed" (a RuntimeError), without the errno.
NEARLY_FULL_BYTES = 1 << 20


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to `path`; move it into place when the block succeeds.

    The caller writes the temporary file by any means (`torch.save`, `np.save`, ...). On
    success it is flushed to disk and renamed over `path`; on any exception it is removed and
    `path` is left exactly as it was.

    Example:
        with atomic_path(out / "train.npy") as tmp:
            np.save(tmp, ids)
    """
    path = Path(path)
    # A hidden name with a random part: never collides with another writer, and a leftover
    # from a killed process is easy to recognise.
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    # O_EXCL: never write through a file (or symlink) that someone else created. Mode 0o666
    # lets the umask decide, as for a plain open(); mkstemp's 0o600 would surprise the user.
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        if path.exists():
            # Replacing a file keeps its permissions (a user's chmod survives a rewrite).
            os.chmod(tmp, stat.S_IMODE(path.stat().st_mode))
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, DiskFullError):
            raise  # another file of the same write already said which one failed
        if _out_of_space(e, path.parent):
            kept = (f"{path.name} there is as it was" if path.exists()
                    else f"no partial {path.name} was left")
            raise DiskFullError(
                f"no space left on the device while writing {path}; nothing was changed "
                f"({kept}); free some space and run the command again") from None
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write `data` to `path` atomically (temporary file in the same folder + `os.replace`)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> None:
    """Write `text` to `path` atomically; UTF-8 unless told otherwise, newlines kept as given."""
    atomic_write_bytes(path, text.encode(encoding))


def _fsync(path: Path) -> None:
    # Without fsync a power cut after the rename can leave the new name pointing at an
    # empty file on some filesystems: the rename reaches the disk before the data.
    fd = os.open(path, os.O_RDWR)  # Windows refuses to flush a read-only handle
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _out_of_space(e: BaseException, folder: Path) -> bool:
    """Whether a failed write failed for want of disk space (or quota)."""
    seen: BaseException | None = e
    for _ in range(8):  # the OSError may sit under a library's own exception
        if seen is None:
            break
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        seen = seen.__cause__ or seen.__context__
    if isinstance(e, (OSError, RuntimeError)):
        try:
            return shutil.disk_usage(folder).free < NEARLY_FULL_BYTES
        except OSError:
            return False
    return False


@contextmanager
def atomic_dir(path: str | os.PathLike[str], *, replace: bool = False) -> Iterator[Path]:
    """Yield an empty temporary folder next to `path`; move it into place when the block
    succeeds, so that `path` is either absent, as it was, or complete, never half written.

    `path` may be missing or an empty folder; a non-empty one is replaced only with
    `replace` (it is moved aside, the new folder renamed in, then the old one deleted).
    On any exception the temporary folder is removed and `path` is left as it was.

    Raises:
        FileExistsError: `path` is a file, or a non-empty folder and `replace` is False.
    """
    path = Path(path)
    if path.exists() and (not path.is_dir() or (any(path.iterdir()) and not replace)):
        raise FileExistsError(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    tmp.mkdir(parents=False)
    try:
        yield tmp
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.old")
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
