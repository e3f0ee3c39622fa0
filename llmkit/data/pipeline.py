"""Pipeline plumbing shared by the LM and span passes: skipped lines, progress, read-ahead,
and the write-then-rename loop that redoes a pass when the split needs fixing.
"""

from __future__ import annotations

import json
import queue
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Protocol, TextIO, TypeVar

from tqdm import tqdm

from llmkit.console import Log
from llmkit.data.cache import SKIPPED
from llmkit.data.sources import BadLine, SourceFile
from llmkit.data.split import HashSplit, check_sides
from llmkit.errors import DataError
from llmkit.fsutil import atomic_path

SHOW_SKIPPED = 10  # bad lines printed; all of them are counted and listed in skipped.jsonl
PROGRESS_SECONDS = 2.0

_T = TypeVar("_T")


class Skips:
    """Counts skipped lines by kind, keeps the first few, writes all to skipped.jsonl."""

    def __init__(self, fh: TextIO) -> None:
        self._fh = fh
        self._lock = threading.Lock()  # lines fail in the reader thread and while encoding
        self.counts: Counter[str] = Counter()
        self.first: list[tuple[tuple[int, int], BadLine]] = []

    def add(self, bad: BadLine, file_index: int) -> None:
        with self._lock:
            self._add(bad, file_index)

    def _add(self, bad: BadLine, file_index: int) -> None:
        self.counts[bad.kind] += 1
        self._fh.write(json.dumps({"source": bad.source, "kind": bad.kind,
                                   "reason": bad.reason}, ensure_ascii=False) + "\n")
        # Span lines fail either while read or once encoded (a batch later): keep the
        # first few by position, not by arrival.
        key = (file_index, int(bad.source.rsplit(":", 1)[1]))
        self.first.append((key, bad))
        self.first.sort(key=lambda kb: kb[0])
        del self.first[SHOW_SKIPPED:]

    def reset(self) -> None:
        self._fh.seek(0)
        self._fh.truncate()
        self.counts.clear()
        self.first.clear()

    def show(self, log: Log, where: str | None) -> None:
        """Log the count and the first few; `where` is the file listing them all."""
        total = sum(self.counts.values())
        if not total:
            return
        listed = f", all in {where}" if where else ""
        log(f"skipped {total} line{'s' if total != 1 else ''} (first {len(self.first)} "
            f"below{listed}):")
        for _, bad in self.first:
            log(f"  {bad}")


class Progress:
    """Bytes read so far, shown as a tqdm bar on stderr while a pass runs.

    tqdm draws nothing when stderr is not a terminal, nor before `PROGRESS_SECONDS`, and
    `close()` ends its line, so later messages start on a line of their own.
    """

    def __init__(self, total: int, enabled: bool) -> None:
        self.done = 0
        self._bar = tqdm(total=total, desc="prepare", unit="B", unit_scale=True,
                         file=sys.stderr, delay=PROGRESS_SECONDS, mininterval=PROGRESS_SECONDS,
                         disable=None if enabled else True, leave=False, dynamic_ncols=True)

    def __call__(self, n: int) -> None:
        self.done += n
        self._bar.update(n)

    def close(self) -> None:
        self._bar.close()


def prefetch(batches: Iterator[_T], depth: int = 2) -> Iterator[_T]:
    """`batches`, produced `depth` ahead in a background thread.

    Reading and splitting (Python) then overlaps with encoding (Rust, which releases the
    GIL), instead of each waiting for the other. An exception in the producer is raised
    here; when the consumer stops early the producer stops too.
    """
    q: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: tuple[str, Any]) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for batch in batches:
                if not put(("batch", batch)):
                    return
            put(("done", None))
        except BaseException as e:  # handed to the consumer, raised there
            put(("error", e))

    worker = threading.Thread(target=produce, name="llmkit-prepare-reader", daemon=True)
    worker.start()
    try:
        while True:
            kind, item = q.get()
            if kind == "done":
                return
            if kind == "error":
                raise item
            yield item
    finally:
        stop.set()
        worker.join()


class Sink(Protocol):
    """Where one side's (train or val) encoded data goes during a pass: a `JsonlSink`, or
    an `npy.NpyWriter` for token ids."""

    def reset(self) -> None:
        """Forget everything written, for a pass that is redone."""

    def finish(self) -> None:
        """Complete the file after the last pass."""


class JsonlSink:
    """Encoded examples, one JSON object a line."""

    def __init__(self, fh: TextIO) -> None:
        self._fh = fh

    def write(self, line: str) -> None:
        self._fh.write(line + "\n")

    def reset(self) -> None:
        self._fh.seek(0)
        self._fh.truncate()

    def finish(self) -> None:
        self._fh.flush()


_S = TypeVar("_S", bound=Sink)
_R = TypeVar("_R")


def write_sides(folder: Path, names: tuple[str, str],
                open_sink: Callable[[ExitStack, Path], _S],
                one_pass: Callable[[HashSplit, dict[str, _S], Skips], _R],
                sides: Callable[[_R, HashSplit], tuple[int, int, str]],
                files: list[tuple[SourceFile, str]], split: HashSplit, log: Log,
                skipped_name: str) -> tuple[_R, Skips]:
    """Run `one_pass` into the train/val files `names` and `skipped.jsonl`, all atomic.

    When the hash split leaves one side empty the pass is redone with the corrected split
    (`check_sides`); the files appear under their names only when everything succeeded.
    `sides(result, split)` gives the counts of train and val units and the unit's name.
    """
    with ExitStack() as stack:
        tmp = {name: stack.enter_context(atomic_path(folder / name))
               for name in (*names, SKIPPED)}
        out = {side: open_sink(stack, tmp[name])
               for side, name in zip(("train", "val"), names, strict=True)}
        skips = Skips(stack.enter_context(open(tmp[SKIPPED], "w", encoding="utf-8")))
        while True:
            result = one_pass(split, out, skips)
            n_train, n_val, unit = sides(result, split)
            try:
                redo = check_sides(files, split, n_train, n_val, unit,
                                   sum(skips.counts.values()), log)
            except DataError:
                skips.show(log, None)  # skipped lines are often why; skipped.jsonl is not kept
                raise
            if redo is None:
                break
            split = redo
            for sink in out.values():
                sink.reset()
            skips.reset()
        for sink in out.values():
            sink.finish()
        skips.show(log, skipped_name)
    return result, skips


def encode_all(batches: Callable[[Progress], Iterator[_T]], encode: Callable[[_T], None],
               total_bytes: int, progress: bool) -> None:
    """Read batches ahead in a thread (`prefetch`) and encode each, showing progress."""
    shown = Progress(total_bytes, progress)
    try:
        for batch in prefetch(batches(shown)):
            encode(batch)
    finally:
        shown.close()
