"""Task span: JSON Lines examples read, split and encoded into `train.jsonl` / `val.jsonl`."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from llmkit.config import Config
from llmkit.console import Log
from llmkit.data.cache import SKIPPED
from llmkit.data.hashing import digest64
from llmkit.data.pipeline import JsonlSink, Progress, Skips, encode_all, write_sides
from llmkit.data.report import DataReport
from llmkit.data.sources import BadLine, SourceFile, display_name, iter_jsonl
from llmkit.data.spans import SpanInput, SpanProblem, encode_span_example, parse_span_line
from llmkit.data.split import HashSplit
from llmkit.errors import DataError
from llmkit.tokenizer import Tokenizer, check_token_ids

SPAN_BATCH = 1024  # span examples per encode call


@dataclass
class _SpanSide:
    examples: int = 0
    tokens: int = 0
    bytes: int = 0
    nospan: int = 0
    widened: int = 0


@dataclass
class _SpanPass:
    train: _SpanSide = field(default_factory=_SpanSide)
    val: _SpanSide = field(default_factory=_SpanSide)
    vocab: np.ndarray | None = None  # id counts over train
    train_texts: set[bytes] = field(default_factory=set)  # digests, for val duplicates
    val_texts: list[bytes] = field(default_factory=list)


def prepare_span(cfg: Config, tok: Tokenizer, folder: Path,
                 files: list[tuple[SourceFile, str]], progress: bool, log: Log
                 ) -> DataReport:
    """Write the span cache files in `folder`; its data report."""
    for f, _ in files:
        if f.format != "jsonl":
            raise DataError(
                f"{f.name}: span data must be JSON Lines, one {{\"text\": ..., \"span\": "
                f"[start, end] or null}} a line; name the file .jsonl or set data.format: jsonl"
            )

    def open_sink(stack: ExitStack, path: Path) -> JsonlSink:
        return JsonlSink(stack.enter_context(open(path, "w", encoding="utf-8")))

    def one_pass(split: HashSplit, out: dict[str, JsonlSink], skips: Skips) -> _SpanPass:
        result = _SpanPass(vocab=np.zeros(tok.vocab_size, dtype=np.int64))
        encode_all(partial(_span_batches, cfg, files, split, skips),
                   partial(_encode_span_batch, cfg, tok, out=out, skips=skips, result=result),
                   sum(f.size for f, _ in files), progress)
        return result

    result, skips = write_sides(
        folder, ("train.jsonl", "val.jsonl"), open_sink, one_pass,
        lambda r, split: (r.train.examples, r.val.examples,
                          "trace" if split.by_trace else "example"),
        files, HashSplit(cfg.project.seed, cfg.data.val_fraction), log,
        display_name(cfg, folder / SKIPPED))
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
    )
    return report


def _span_batches(cfg: Config, files: list[tuple[SourceFile, str]], split: HashSplit,
                  skips: Skips, shown: Progress
                  ) -> Iterator[list[tuple[SpanInput, bool, int]]]:
    """Batches of (checked line, goes to val, file index), in file order."""
    batch: list[tuple[SpanInput, bool, int]] = []
    for index, (f, role) in enumerate(files):
        for item in _parsed_lines(f, cfg.data.text_field, shown, skips, index):
            key = _span_key(item, split)
            is_val = role == "val" or (role == "split" and split.is_val(key))
            batch.append((item, is_val, index))
            if len(batch) >= SPAN_BATCH:
                yield batch
                batch = []
    if batch:
        yield batch


def _parsed_lines(f: SourceFile, text_field: str, on_bytes: Callable[[int], None],
                  skips: Skips, index: int) -> Iterator[SpanInput]:
    for item in iter_jsonl(f, on_bytes):
        if isinstance(item, BadLine):
            skips.add(item, index)
            continue
        where, obj = item
        try:
            yield parse_span_line(obj, where, text_field)
        except SpanProblem as p:
            skips.add(BadLine(where, p.kind, p.reason), index)


def _span_key(item: SpanInput, split: HashSplit) -> bytes:
    # All steps of a trace go to the same side; without traces, identical texts do.
    if "trace_id" in item.trace:
        split.by_trace = True
        return b"trace:" + str(item.trace["trace_id"]).encode("utf-8")
    return b"text:" + item.text.encode("utf-8")


def _encode_span_batch(cfg: Config, tok: Tokenizer, batch: Iterable[tuple[SpanInput, bool, int]],
                       *, out: dict[str, JsonlSink], skips: Skips, result: _SpanPass) -> None:
    batch = list(batch)
    if not batch:
        return
    encoded = tok.encode_offsets_batch([inp.text for inp, _, _ in batch])
    train_ids: list[list[int]] = []
    for (inp, is_val, index), (ids, offsets) in zip(batch, encoded, strict=True):
        try:
            ex = encode_span_example(inp, ids, offsets, cfg.model.block_size)
        except SpanProblem as p:
            skips.add(BadLine(inp.source, p.kind, p.reason), index)
            continue
        side_name = "val" if is_val else "train"
        check_token_ids(ex.ids, tok.vocab_size, f"the ids encoded for {side_name}.jsonl "
                                                f"from {inp.source}")
        side: _SpanSide = getattr(result, side_name)
        out[side_name].write(ex.to_json())
        side.examples += 1
        side.tokens += len(ex.ids)
        side.bytes += len(inp.text.encode("utf-8"))
        side.nospan += ex.char_span is None
        side.widened += ex.widened
        if is_val:
            result.val_texts.append(digest64(inp.text.encode("utf-8")))
        else:
            result.train_texts.add(digest64(inp.text.encode("utf-8")))
            train_ids.append(ex.ids)
    if train_ids and result.vocab is not None:
        flat = np.fromiter(itertools.chain.from_iterable(train_ids), dtype=np.int64)
        result.vocab += np.bincount(flat, minlength=tok.vocab_size)[: tok.vocab_size]
