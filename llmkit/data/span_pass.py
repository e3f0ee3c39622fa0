"""Task span: JSON Lines examples read, split and encoded into `train.jsonl` / `val.jsonl`.

Examples are split by `group`, else `trace_id`, else context text (`SpanInput.split_key`),
so questions on one paragraph land on one side. Each example is stored once, whole; the
windows the model reads are cut from it when batches are made (`llmkit.data.windows`), and
the report counts them.
"""

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
from llmkit.data.report import DataReport, length_percentiles
from llmkit.data.sources import BadLine, SourceFile, display_name, iter_jsonl
from llmkit.data.spans import SpanInput, SpanProblem, encode_span_inputs, parse_span_line
from llmkit.data.split import HashSplit
from llmkit.data.windows import special_tokens
from llmkit.errors import DataError
from llmkit.tokenizer import Tokenizer, check_token_ids

SPAN_BATCH = 1024  # span examples per encode call


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
                          "group" if split.by_trace else "example"),
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
        windows_train=result.train.windows, windows_val=result.val.windows,
        example_tokens=length_percentiles(result.train.lengths + result.val.lengths),
        multi_window_examples=(sum(n > cfg.model.block_size for n in result.train.lengths)
                               + sum(n > cfg.model.block_size for n in result.val.lengths)),
        block_size=cfg.model.block_size,
    )
    return report


def _span_batches(cfg: Config, files: list[tuple[SourceFile, str]], split: HashSplit,
                  skips: Skips, shown: Progress
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




def _encode_span_batch(cfg: Config, tok: Tokenizer, batch: Iterable[tuple[SpanInput, bool, int]],
                       *, out: dict[str, JsonlSink], skips: Skips, result: _SpanPass) -> None:
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
        out[side_name].write(ex.to_json())
        length = len(ex.prefix_ids) + len(ex.ids) + special_tokens(bool(ex.prefix_ids))
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
            result.val_texts.append(digest64(inp.text.encode("utf-8")))
        else:
            result.train_texts.add(digest64(inp.text.encode("utf-8")))
            train_ids.append([*ex.prefix_ids, *ex.ids])
    if train_ids and result.vocab is not None:
        flat = np.fromiter(itertools.chain.from_iterable(train_ids), dtype=np.int64)
        result.vocab += np.bincount(flat, minlength=tok.vocab_size)[: tok.vocab_size]
