"""`llmkit prepare`: validate the data and encode it into the cache, once.

The cache (`data.cache_dir`) holds, for task lm, `train.npy` / `val.npy` (flat token ids,
documents joined with EOS) and for task span `train.jsonl` / `val.jsonl` (one encoded
example a line, see `llmkit.data.spans`), plus `skipped.jsonl` (every line that was
skipped, with file:line and reason) and `meta.json`.

`meta.json` records what the cache was made from: the tokenizer hash and size, every
source file with its size, mtime and sha256, and the config keys that shape the cache.
`stale_reason` compares these with the project as it is now. `meta.json` is deleted first
and written last, and the data files are written under temporary names and renamed into
place, so a crash never leaves a cache that looks fresh.

Validation data is split off by document (for spans: by `group`, else `trace_id`, else
context text, so questions on one paragraph stay together), never by cutting windows out
of one stream: a document goes to val when a keyed hash of its text (or group key) falls
below `data.val_fraction`. The hash is stable across runs and
machines, and identical documents always land on the same side.

Memory stays bounded on corpora of many GB: documents are read one at a time, encoded a
batch at a time, and their ids are appended to the `.npy` files as they come.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import queue
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO, TextIO, TypeVar

import numpy as np

from llmkit.config import Config
from llmkit.data.report import (
    DataReport,
    NpyFile,
    length_percentiles,
    vocab_counts,
    window_overlap,
)
from llmkit.data.sources import (
    BadLine,
    Document,
    SourceFile,
    display_name,
    iter_documents,
    iter_jsonl,
    resolve_sources,
)
from llmkit.data.spans import SpanInput, SpanProblem, encode_span_inputs, parse_span_line
from llmkit.errors import DataError, VocabMismatchError
from llmkit.fsutil import atomic_path, atomic_write_text
from llmkit.tokenizer import EOS_ID, Tokenizer, check_token_ids

CACHE_VERSION = 2  # bump when the cache layout changes: old caches then count as stale
META = "meta.json"
SKIPPED = "skipped.jsonl"
SHOW_SKIPPED = 10  # bad lines printed; all of them are counted and listed in skipped.jsonl
BATCH_DOCS = 2048  # documents per encode_batch call
BATCH_CHARS = 1 << 20  # ... or fewer, when they hold this many characters
SPAN_BATCH = 1024  # span examples per encode call
PROGRESS_SECONDS = 2.0

Log = Callable[[str], None]
_T = TypeVar("_T")


@dataclass(frozen=True)
class PreparedData:
    """A prepared cache: where its files are and what meta.json says about them."""

    cache_dir: Path
    task: str
    train: Path  # train.npy (lm) or train.jsonl (span)
    val: Path
    meta: dict[str, Any]
    rebuilt: bool = False  # True when this call encoded the data, False when it reused it

    @property
    def report(self) -> DataReport:
        """The data report saved with the cache."""
        return DataReport.from_dict(self.meta["report"])


def cache_dir(cfg: Config) -> Path:
    """The project's cache folder (`data.cache_dir`, resolved)."""
    return cfg.path(cfg.data.cache_dir)


def cache_keys(cfg: Config) -> dict[str, Any]:
    """The config values that shape the cache; changing one makes the cache stale."""
    keys: dict[str, Any] = {
        "project.task": cfg.project.task,
        "project.seed": cfg.project.seed,  # keys the val split hash
        "data.format": cfg.data.format,
        "data.text_field": cfg.data.text_field,
        # Only used when val is split off train: with data.val it changes nothing.
        "data.val_fraction": None if cfg.data.val else cfg.data.val_fraction,
    }
    if cfg.project.task == "span":
        # A prefix must leave room for context in a window, and a stride must fit in one.
        keys["model.block_size"] = cfg.model.block_size
        keys["data.window_stride"] = cfg.data.window_stride
    return keys


def _split_files(cfg: Config) -> list[tuple[SourceFile, str]]:
    """Each source file with its role: "train", "val", or "split" (val split off by hash)."""
    train, val = resolve_sources(cfg)
    if val:
        return [(f, "train") for f in train] + [(f, "val") for f in val]
    return [(f, "split") for f in train]


def _file_names(task: str) -> tuple[str, str]:
    return ("train.npy", "val.npy") if task == "lm" else ("train.jsonl", "val.jsonl")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _read_meta(folder: Path) -> dict[str, Any] | None:
    try:
        meta = json.loads((folder / META).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return meta if isinstance(meta, dict) else None


# --------------------------------------------------------------------------------------
# Freshness
# --------------------------------------------------------------------------------------


def stale_reason(cfg: Config, tok: Tokenizer) -> str | None:
    """Why the cache must be rebuilt, in words; None when it is fresh.

    Sources are compared by size and mtime first; only a file whose mtime changed is
    hashed again (a `touch` alone does not make the cache stale).

    Raises:
        DataError: a data path or glob matches no file (there is nothing to compare with).
    """
    folder = cache_dir(cfg)
    meta = _read_meta(folder)
    if meta is None:
        return "no cache yet"
    if meta.get("version") != CACHE_VERSION:
        return f"the cache format changed (version {meta.get('version')} -> {CACHE_VERSION})"
    old_tok = meta.get("tokenizer", {})
    if old_tok.get("hash") != tok.hash:
        return (f"tokenizer changed (hash {str(old_tok.get('hash'))[:12]} -> "
                f"{tok.hash[:12]})")
    old_keys = meta.get("config", {})
    for key, value in cache_keys(cfg).items():
        if key not in old_keys or old_keys[key] != value:
            return f"{key} changed {old_keys.get(key)} -> {value}"
    for name in _file_names(cfg.project.task):
        if not (folder / name).is_file():
            return f"{display_name(cfg, folder / name)} is missing"
    return _sources_changed(meta.get("sources", []), _split_files(cfg))


def _sources_changed(old: list[dict[str, Any]], now: list[tuple[SourceFile, str]]
                     ) -> str | None:
    before = {s["name"]: s for s in old}
    for f, role in now:
        s = before.pop(f.name, None)
        if s is None:
            return f"{f.name} is new"
        if s.get("role") != role:
            return f"{f.name} changed role ({s.get('role')} -> {role})"
        if s.get("size") != f.size:
            return f"{f.name} changed (size {s.get('size')} -> {f.size} bytes)"
        if s.get("mtime_ns") != f.path.stat().st_mtime_ns and s.get("sha256") != _sha256(f.path):
            return f"{f.name} changed (same size, different content)"
    if before:
        return f"{next(iter(before))} is no longer in the data"
    return None


# --------------------------------------------------------------------------------------
# Preparing
# --------------------------------------------------------------------------------------


def prepare_data(cfg: Config, tok: Tokenizer, *, force: bool = False, progress: bool = True,
                 log: Log = print) -> PreparedData:
    """Encode the project's data into its cache unless the cache is fresh.

    Args:
        cfg: the project config (task, data paths, split, block size for spans).
        tok: the project's tokenizer; its hash and size are recorded in meta.json.
        force: rebuild even when the cache is fresh.
        progress: show a progress line on stderr while encoding large data.
        log: where the summary and the data report go (one string per call).

    Raises:
        DataError: no usable data, no validation data possible, or a bad format.
        TokenIdError: the tokenizer produced an id outside its own vocabulary.
    """
    folder = cache_dir(cfg)
    reason = "forced" if force else stale_reason(cfg, tok)
    if reason is None:
        meta = _read_meta(folder)
        assert meta is not None
        prepared = _prepared(cfg, folder, meta, rebuilt=False)
        log(f"data cache {display_name(cfg, folder)} is up to date; data report:\n"
            f"{prepared.report.format()}")
        return prepared
    if not cfg.data.val and cfg.data.val_fraction == 0:
        raise DataError(
            "data.val_fraction is 0 and data.val is empty: training needs validation data "
            "for the validation loss and the overfitting monitor; set data.val_fraction "
            "(e.g. 0.1) or list validation files in data.val"
        )
    log(f"preparing data in {display_name(cfg, folder)} ({reason})")
    started = time.monotonic()
    folder.mkdir(parents=True, exist_ok=True)
    # Without meta.json the cache is never fresh, whatever happens until it is rewritten.
    (folder / META).unlink(missing_ok=True)
    files = _split_files(cfg)
    sources = [{"name": f.name, "role": role, "size": f.size,
                "mtime_ns": f.path.stat().st_mtime_ns, "sha256": _sha256(f.path)}
               for f, role in files]
    if cfg.project.task == "lm":
        counts, report = _prepare_lm(cfg, tok, folder, files, progress, log)
        dtype: str | None = _lm_dtype(tok.vocab_size).name
    else:
        counts, report = _prepare_span(cfg, tok, folder, files, progress, log)
        dtype = None
    meta = {
        "version": CACHE_VERSION,
        "task": cfg.project.task,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(time.monotonic() - started, 3),
        "tokenizer": {"hash": tok.hash, "vocab_size": tok.vocab_size, "kind": tok.kind},
        "dtype": dtype,
        "config": cache_keys(cfg),
        "sources": sources,
        "files": dict(zip(("train", "val"), _file_names(cfg.project.task), strict=True),
                      skipped=SKIPPED),
        "counts": counts,
        "report": report.to_dict(),
    }
    atomic_write_text(folder / META, json.dumps(meta, indent=2) + "\n")
    log("data report:\n" + report.format())
    return _prepared(cfg, folder, meta, rebuilt=True)


def load_prepared(cfg: Config, tok: Tokenizer) -> PreparedData:
    """Open an existing cache for training, checking that it fits the tokenizer.

    Raises:
        DataError: there is no cache (run `llmkit prepare`), or it was made for another task.
        VocabMismatchError: the cache was encoded with a different tokenizer.
    """
    folder = cache_dir(cfg)
    meta = _read_meta(folder)
    where = display_name(cfg, folder)
    if meta is None or meta.get("version") != CACHE_VERSION:
        raise DataError(f"no prepared data in {where}; run `llmkit prepare`")
    if meta.get("task") != cfg.project.task:
        raise DataError(f"the data in {where} was prepared for task {meta.get('task')!r}, the "
                        f"project's task is {cfg.project.task!r}; run `llmkit prepare`")
    t = meta["tokenizer"]
    if t["vocab_size"] != tok.vocab_size or t["hash"] != tok.hash:
        raise VocabMismatchError(
            f"the data in {where} was encoded with a tokenizer of {t['vocab_size']} tokens "
            f"(hash {t['hash'][:12]}), the current tokenizer {tok.path} has {tok.vocab_size} "
            f"tokens (hash {tok.hash[:12]}); run `llmkit prepare` to encode the data again"
        )
    prepared = _prepared(cfg, folder, meta, rebuilt=False)
    for path in (prepared.train, prepared.val):
        if not path.is_file():
            raise DataError(f"{display_name(cfg, path)} is missing; run `llmkit prepare`")
    return prepared


def _prepared(cfg: Config, folder: Path, meta: dict[str, Any], rebuilt: bool) -> PreparedData:
    train, val = _file_names(meta["task"])
    return PreparedData(cache_dir=folder, task=meta["task"], train=folder / train,
                        val=folder / val, meta=meta, rebuilt=rebuilt)


def _lm_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16 if vocab_size <= 1 << 16 else np.uint32)


# --------------------------------------------------------------------------------------
# Shared pieces: the split, skipped lines, progress
# --------------------------------------------------------------------------------------


class _Split:
    """The val/train decision for one document (or trace) from a keyed stable hash."""

    def __init__(self, seed: int, fraction: float, force_val: int | None = None,
                 force_train: int | None = None) -> None:
        self.seed, self.fraction = seed, fraction
        self._salt = f"llmkit-split:{seed}:".encode()
        self._threshold = int(fraction * 2**64)
        self.force_val, self.force_train = force_val, force_train
        self.lowest: int | None = None  # bucket of the document most eager to be in val
        self.highest: int | None = None
        self.by_trace = False  # span data: set when a line has a group or trace_id

    def is_val(self, key: bytes) -> bool:
        b = int.from_bytes(hashlib.blake2b(self._salt + key, digest_size=8).digest(), "little")
        self.lowest = b if self.lowest is None else min(self.lowest, b)
        self.highest = b if self.highest is None else max(self.highest, b)
        if b == self.force_val:
            return True
        if b == self.force_train:
            return False
        return b < self._threshold


def _check_sides(files: list[tuple[SourceFile, str]], split: _Split, n_train: int, n_val: int,
                 unit: str, skips: _Skips, log: Log) -> _Split | None:
    """None when train and val both hold data; a split to redo the pass with when the hash
    split left one side empty.

    Raises:
        DataError: nothing usable at all, or on one side of a data.val split, or too few
            documents to split. The skipped lines are shown first: they are often why.
    """
    try:
        skipped = sum(skips.counts.values())
        why = f" ({skipped} lines were skipped, see above)" if skipped else ""
        if n_train + n_val == 0:
            raise DataError(f"no usable {unit} in the data{why}; fix the data and run "
                            f"`llmkit prepare` again")
        if files[0][1] == "split":
            return _fix_split(split, n_train, n_val, unit, log)
        for key, n in (("data.train", n_train), ("data.val", n_val)):
            if n == 0:
                raise DataError(f"{key} holds no usable {unit}{why}; fix the data or the "
                                f"paths in {key}")
        return None
    except DataError:
        skips.show(log, None)  # skipped.jsonl is not written when preparing fails
        raise


def _fix_split(split: _Split, n_train: int, n_val: int, unit: str, log: Log) -> _Split | None:
    """A split to redo the pass with when one side came out empty; None when both are fine.

    With few documents the hash can put all of them on one side. Then the document whose
    hash is lowest (highest) goes to val (train): still deterministic, and nothing else
    moves.
    """
    n = n_train + n_val
    if n_val and n_train:
        return None
    if n < 2:
        raise DataError(
            f"the training data holds {n} {unit}{'s' if n != 1 else ''}, too few to split "
            f"off validation data by {unit}; add more {unit}s (plain text: separate them with "
            f"a blank line), or list validation files in data.val"
        )
    if split.force_val is not None or split.force_train is not None:
        # Already redone: only identical texts (one hash for all) can still be one-sided.
        raise DataError(
            f"all {n} {unit}s of the training data are identical, so no validation data can "
            f"be split off that differs from training; add different {unit}s, or list "
            f"validation files in data.val"
        )
    if not n_val:
        log(f"note: none of the {n} {unit}s fell in the validation split by hash "
            f"(data.val_fraction {split.fraction:g}); using the first {unit} in hash order")
        return _Split(split.seed, split.fraction, force_val=split.lowest)
    log(f"note: all {n} {unit}s fell in the validation split by hash (data.val_fraction "
        f"{split.fraction:g}); keeping the last {unit} in hash order for training")
    return _Split(split.seed, split.fraction, force_train=split.highest)


class _Skips:
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


class _Progress:
    """A stderr line with MB done, total and MB/s, every few seconds (when enabled)."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.enabled = total, enabled
        self.done = self._unchecked = 0
        self.started = self._last = time.monotonic()
        self._shown = False

    def __call__(self, n: int) -> None:
        self.done += n
        self._unchecked += n
        if not self.enabled or self._unchecked < 1 << 20:  # look at the clock once per MB
            return
        self._unchecked = 0
        now = time.monotonic()
        if now - self._last >= PROGRESS_SECONDS:
            self._last = now
            self._shown = True
            rate = self.done / 1e6 / max(now - self.started, 1e-9)
            pct = 100 * self.done / self.total if self.total else 100.0
            sys.stderr.write(f"\rprepare: {self.done / 1e6:,.1f} / {self.total / 1e6:,.1f} MB "
                             f"({pct:.0f}%), {rate:,.1f} MB/s ")
            sys.stderr.flush()

    def close(self) -> None:
        if self._shown:
            sys.stderr.write("\n")
            sys.stderr.flush()


def _prefetch(batches: Iterator[_T], depth: int = 2) -> Iterator[_T]:
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


# --------------------------------------------------------------------------------------
# Task lm: token ids in .npy files
# --------------------------------------------------------------------------------------


class _NpyAppender:
    """A 1-D .npy file whose length is known only when the last ids have been appended.

    The header is written last, over a placeholder of the same size: numpy pads the shape
    field of a header so that its size does not depend on the length.
    """

    def __init__(self, fh: BinaryIO, dtype: np.dtype) -> None:
        self._fh, self.dtype, self.n = fh, dtype, 0
        self._header_len = len(self._header(0))
        self.reset()

    def _header(self, n: int) -> bytes:
        import io

        buf = io.BytesIO()
        np.lib.format.write_array_header_1_0(buf, {
            "descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False,
            "shape": (n,)})
        return buf.getvalue()

    def reset(self) -> None:
        self._fh.seek(0)
        self._fh.truncate()
        self._fh.write(b"\0" * self._header_len)
        self.n = 0

    def append(self, ids: np.ndarray) -> None:
        ids.astype(self.dtype, copy=False).tofile(self._fh)
        self.n += len(ids)

    def finish(self) -> None:
        header = self._header(self.n)
        assert len(header) == self._header_len, "numpy changed its .npy header padding"
        self._fh.seek(0)
        self._fh.write(header)
        self._fh.flush()


@dataclass
class _LmSide:
    """What one split has received so far."""

    documents: int = 0
    tokens: int = 0
    bytes: int = 0


@dataclass
class _LmPass:
    train: _LmSide = field(default_factory=_LmSide)
    val: _LmSide = field(default_factory=_LmSide)


def _prepare_lm(cfg: Config, tok: Tokenizer, folder: Path, files: list[tuple[SourceFile, str]],
                progress: bool, log: Log) -> tuple[dict[str, Any], DataReport]:
    dtype = _lm_dtype(tok.vocab_size)
    split = _Split(cfg.project.seed, cfg.data.val_fraction)
    with ExitStack() as stack:
        tmp = {name: stack.enter_context(atomic_path(folder / name))
               for name in ("train.npy", "val.npy", SKIPPED)}
        out = {side: _NpyAppender(stack.enter_context(open(tmp[f"{side}.npy"], "w+b")), dtype)
               for side in ("train", "val")}
        skips = _Skips(stack.enter_context(open(tmp[SKIPPED], "w", encoding="utf-8")))
        while True:
            result = _lm_pass(cfg, tok, files, split, out, skips, progress)
            redo = _check_sides(files, split, result.train.documents, result.val.documents,
                                "document", skips, log)
            if redo is None:
                break
            split = redo
            for appender in out.values():
                appender.reset()
            skips.reset()
        for appender in out.values():
            appender.finish()
        skips.show(log, display_name(cfg, folder / SKIPPED))
    # Read back with file reads, not a memmap: RSS stays flat however big the cache is.
    train, val = NpyFile(folder / "train.npy"), NpyFile(folder / "val.npy")
    overlap, checked, sample = window_overlap(train, val, EOS_ID)
    report = DataReport(
        task="lm",
        documents_train=result.train.documents, documents_val=result.val.documents,
        tokens_train=result.train.tokens, tokens_val=result.val.tokens,
        bytes_train=result.train.bytes, bytes_val=result.val.bytes,
        vocab_size=tok.vocab_size,
        vocab_used=int(np.count_nonzero(vocab_counts(train, tok.vocab_size))),
        overlap=overlap, overlap_windows=checked, overlap_sample=sample,
        skipped=dict(skips.counts),
    )
    counts = {
        "documents": {"train": result.train.documents, "val": result.val.documents},
        "tokens": {"train": result.train.tokens, "val": result.val.tokens},
        "bytes": {"train": result.train.bytes, "val": result.val.bytes},
        "skipped": dict(skips.counts),
        "skipped_total": sum(skips.counts.values()),
    }
    return counts, report


def _lm_pass(cfg: Config, tok: Tokenizer, files: list[tuple[SourceFile, str]], split: _Split,
             out: dict[str, _NpyAppender], skips: _Skips, progress: bool) -> _LmPass:
    """Read, split and encode every document once; append the ids to `out`."""
    result = _LmPass()
    shown = _Progress(sum(f.size for f, _ in files), progress)
    try:
        for batch in _prefetch(_lm_batches(cfg, files, split, skips, shown)):
            _encode_lm_batch(tok, batch, out, result)
    finally:
        shown.close()
    return result


def _lm_batches(cfg: Config, files: list[tuple[SourceFile, str]], split: _Split,
                skips: _Skips, shown: _Progress) -> Iterator[list[tuple[Document, bool]]]:
    """Batches of (document, goes to val), read and split in file order."""
    batch: list[tuple[Document, bool]] = []
    chars = 0
    for index, (f, role) in enumerate(files):
        is_val = False
        starts = True  # the next piece starts a new document
        for item in iter_documents(f, cfg.data.text_field, shown):
            if isinstance(item, BadLine):
                skips.add(item, index)
                continue
            if starts:
                is_val = role == "val" or (role == "split"
                                           and split.is_val(item.text.encode("utf-8")))
            starts = item.last
            batch.append((item, is_val))
            chars += len(item.text)
            if len(batch) >= BATCH_DOCS or chars >= BATCH_CHARS:
                yield batch
                batch, chars = [], 0
    if batch:
        yield batch


def _encode_lm_batch(tok: Tokenizer, batch: list[tuple[Document, bool]],
                     out: dict[str, _NpyAppender], result: _LmPass) -> None:
    if not batch:
        return
    encoded = tok.encode_batch([doc.text for doc, _ in batch])
    eos = [EOS_ID]
    for side_name, want_val in (("train", False), ("val", True)):
        side: _LmSide = getattr(result, side_name)
        parts: list[list[int]] = []
        for (doc, is_val), ids in zip(batch, encoded, strict=True):
            if is_val != want_val:
                continue
            parts.append(ids)
            side.bytes += len(doc.text.encode("utf-8"))
            if doc.last:
                parts.append(eos)
                side.documents += 1
        if not parts:
            continue
        n = sum(len(p) for p in parts)
        ids_arr = np.fromiter(itertools.chain.from_iterable(parts), dtype=np.int64, count=n)
        check_token_ids(ids_arr, tok.vocab_size, f"the ids encoded for {side_name}.npy")
        out[side_name].append(ids_arr)
        side.tokens += n


# --------------------------------------------------------------------------------------
# Task span: encoded examples in .jsonl files
# --------------------------------------------------------------------------------------


@dataclass
class _SpanSide:
    examples: int = 0
    windows: int = 0
    tokens: int = 0
    bytes: int = 0
    nospan: int = 0
    widened: int = 0
    lengths: list[int] = field(default_factory=list)  # tokens per example, as one input


@dataclass
class _SpanPass:
    train: _SpanSide = field(default_factory=_SpanSide)
    val: _SpanSide = field(default_factory=_SpanSide)
    vocab: np.ndarray | None = None  # id counts over train
    train_texts: set[bytes] = field(default_factory=set)  # context digests, for overlap
    val_texts: list[bytes] = field(default_factory=list)


def _prepare_span(cfg: Config, tok: Tokenizer, folder: Path,
                  files: list[tuple[SourceFile, str]], progress: bool, log: Log
                  ) -> tuple[dict[str, Any], DataReport]:
    for f, _ in files:
        if f.format != "jsonl":
            raise DataError(
                f"{f.name}: span data must be JSON Lines, one {{\"text\": ..., \"span\": "
                f"[start, end] or null}} a line; name the file .jsonl or set data.format: jsonl"
            )
    split = _Split(cfg.project.seed, cfg.data.val_fraction)
    with ExitStack() as stack:
        tmp = {name: stack.enter_context(atomic_path(folder / name))
               for name in ("train.jsonl", "val.jsonl", SKIPPED)}
        out = {side: stack.enter_context(open(tmp[f"{side}.jsonl"], "w", encoding="utf-8"))
               for side in ("train", "val")}
        skips = _Skips(stack.enter_context(open(tmp[SKIPPED], "w", encoding="utf-8")))
        while True:
            result = _span_pass(cfg, tok, files, split, out, skips, progress)
            redo = _check_sides(files, split, result.train.examples, result.val.examples,
                                "group" if split.by_trace else "example", skips, log)
            if redo is None:
                break
            split = redo
            for fh in out.values():
                fh.seek(0)
                fh.truncate()
            skips.reset()
        skips.show(log, display_name(cfg, folder / SKIPPED))
    dup = sum(1 for d in result.val_texts if d in result.train_texts)
    vocab_used = int(np.count_nonzero(result.vocab)) if result.vocab is not None else 0
    report = DataReport(
        task="span",
        documents_train=result.train.examples, documents_val=result.val.examples,
        tokens_train=result.train.tokens, tokens_val=result.val.tokens,
        bytes_train=result.train.bytes, bytes_val=result.val.bytes,
        vocab_size=tok.vocab_size, vocab_used=vocab_used, skipped=dict(skips.counts),
        nospan_train=result.train.nospan, nospan_val=result.val.nospan,
        duplicate_val_texts=dup, widened_spans=result.train.widened + result.val.widened,
        windows_train=result.train.windows, windows_val=result.val.windows,
        example_tokens=length_percentiles(result.train.lengths + result.val.lengths),
        multi_window_examples=(sum(n > cfg.model.block_size for n in result.train.lengths)
                               + sum(n > cfg.model.block_size for n in result.val.lengths)),
        block_size=cfg.model.block_size,
    )
    counts = {
        "examples": {"train": result.train.examples, "val": result.val.examples},
        "windows": {"train": result.train.windows, "val": result.val.windows},
        "tokens": {"train": result.train.tokens, "val": result.val.tokens},
        "bytes": {"train": result.train.bytes, "val": result.val.bytes},
        "nospan": {"train": result.train.nospan, "val": result.val.nospan},
        "widened_spans": result.train.widened + result.val.widened,
        "skipped": dict(skips.counts),
        "skipped_total": sum(skips.counts.values()),
    }
    return counts, report


def _span_pass(cfg: Config, tok: Tokenizer, files: list[tuple[SourceFile, str]], split: _Split,
               out: dict[str, TextIO], skips: _Skips, progress: bool) -> _SpanPass:
    result = _SpanPass(vocab=np.zeros(tok.vocab_size, dtype=np.int64))
    shown = _Progress(sum(f.size for f, _ in files), progress)
    try:
        for batch in _prefetch(_span_batches(cfg, files, split, skips, shown)):
            _encode_span_batch(cfg, tok, batch, out, skips, result)
    finally:
        shown.close()
    return result


def _span_batches(cfg: Config, files: list[tuple[SourceFile, str]], split: _Split,
                  skips: _Skips, shown: _Progress
                  ) -> Iterator[list[tuple[SpanInput, bool, int]]]:
    """Batches of (checked line, goes to val, file index), in file order."""
    batch: list[tuple[SpanInput, bool, int]] = []
    for index, (f, role) in enumerate(files):
        for item in _parsed_lines(f, cfg.data.text_field, shown, skips, index):
            if item.group is not None or "trace_id" in item.trace:
                split.by_trace = True  # the unit of the split is the group
            key = item.split_key
            is_val = role == "val" or (role == "split" and split.is_val(key))
            batch.append((item, is_val, index))
            if len(batch) >= SPAN_BATCH:
                yield batch
                batch = []
    if batch:
        yield batch


def _parsed_lines(f: SourceFile, text_field: str, on_bytes: Callable[[int], None],
                  skips: _Skips, index: int) -> Iterator[SpanInput]:
    for item in iter_jsonl(f, on_bytes):
        if isinstance(item, BadLine):
            skips.add(item, index)
            continue
        where, obj = item
        try:
            yield parse_span_line(obj, where, text_field)
        except SpanProblem as p:
            skips.add(BadLine(where, p.kind, p.reason), index)


def _digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()


def _encode_span_batch(cfg: Config, tok: Tokenizer, batch: Iterable[tuple[SpanInput, bool, int]],
                       out: dict[str, TextIO], skips: _Skips, result: _SpanPass) -> None:
    batch = list(batch)
    if not batch:
        return
    inputs = [inp for inp, _, _ in batch]
    encoded = encode_span_inputs(tok, inputs, cfg.model.block_size, cfg.data.window_stride)
    train_ids: list[list[int]] = []
    for (inp, is_val, index), ex in zip(batch, encoded, strict=True):
        if isinstance(ex, SpanProblem):
            skips.add(BadLine(inp.source, ex.kind, ex.reason), index)
            continue
        side_name = "val" if is_val else "train"
        check_token_ids([*ex.prefix_ids, *ex.ids], tok.vocab_size,
                        f"the ids encoded for {side_name}.jsonl from {inp.source}")
        side: _SpanSide = getattr(result, side_name)
        out[side_name].write(ex.to_json() + "\n")
        length = len(ex.prefix_ids) + len(ex.ids) + (3 if ex.prefix_ids else 2)
        side.examples += 1
        side.windows += len(ex.window_starts(cfg.model.block_size, cfg.data.window_stride))
        side.tokens += length
        side.lengths.append(length)
        side.bytes += len(inp.text.encode("utf-8")) + len(inp.prefix.encode("utf-8"))
        side.nospan += ex.char_span is None
        side.widened += ex.widened
        # Overlap is counted by context: a validation question on a paragraph that is
        # also trained on measures memory of that paragraph.
        if is_val:
            result.val_texts.append(_digest(inp.text))
        else:
            result.train_texts.add(_digest(inp.text))
            train_ids.append([*ex.prefix_ids, *ex.ids])
    if train_ids and result.vocab is not None:
        flat = np.fromiter(itertools.chain.from_iterable(train_ids), dtype=np.int64)
        result.vocab += np.bincount(flat, minlength=tok.vocab_size)[: tok.vocab_size]
