"""Task lm: documents read, split and encoded into `train.npy` / `val.npy` in one pass.

Memory stays bounded on corpora of many GB: documents are read one at a time, encoded a
batch at a time, and their ids are appended to the `.npy` files as they come.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from llmkit.config import Config
from llmkit.console import Log
from llmkit.data.cache import SKIPPED
from llmkit.data.npy import NpyFile, NpyWriter, token_dtype
from llmkit.data.pipeline import Progress, Skips, encode_all, write_sides
from llmkit.data.report import DataReport, vocab_counts, window_overlap
from llmkit.data.sources import BadLine, Document, SourceFile, display_name, iter_documents
from llmkit.data.split import HashSplit
from llmkit.tokenizer import EOS_ID, Tokenizer, check_token_ids

BATCH_DOCS = 2048  # documents per encode_batch call
BATCH_CHARS = 1 << 20  # ... or fewer, when they hold this many characters


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


def prepare_lm(cfg: Config, tok: Tokenizer, folder: Path, files: list[tuple[SourceFile, str]],
               progress: bool, log: Log
               ) -> DataReport:
    """Write the LM cache files in `folder`; its data report."""
    dtype = token_dtype(tok.vocab_size)

    def open_sink(stack: ExitStack, path: Path) -> NpyWriter:
        return NpyWriter(stack.enter_context(open(path, "w+b")), dtype)

    def one_pass(split: HashSplit, out: dict[str, NpyWriter], skips: Skips) -> _LmPass:
        result = _LmPass()
        encode_all(partial(_lm_batches, cfg, files, split, skips),
                   partial(_encode_lm_batch, tok, out=out, result=result),
                   sum(f.size for f, _ in files), progress)
        return result

    result, skips = write_sides(
        folder, ("train.npy", "val.npy"), open_sink, one_pass,
        lambda r, _: (r.train.documents, r.val.documents, "document"),
        files, HashSplit(cfg.project.seed, cfg.data.val_fraction), log,
        display_name(cfg, folder / SKIPPED))
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
    return report


def _lm_batches(cfg: Config, files: list[tuple[SourceFile, str]], split: HashSplit,
                skips: Skips, shown: Progress) -> Iterator[list[tuple[Document, bool]]]:
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


def _encode_lm_batch(tok: Tokenizer, batch: list[tuple[Document, bool]], *,
                     out: dict[str, NpyWriter], result: _LmPass) -> None:
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
