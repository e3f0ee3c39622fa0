"""Span examples: checking a data line, encoding it, serving its windows in batches.

A data line is either

    {"text": str, "span": [start, end] | null}
    {"question": str, "context": str, "span": [start, end] | null}

with character offsets into the text (or the context) and an exclusive end. `question` is
optional next to `context` (any prefix: a question, an instruction). A line may also carry
`group` (a string or integer: examples of one group are kept on one side of the
train/validation split; `trace_id` does the same for traces) and, when the examples are the
steps of a trace, `trace_id`, `step` (0-based) and `steps_total`. Other fields are ignored
here (and kept by `llmkit predict`).

The cache holds one encoded example a line: the prefix ids, the context ids with their
character offsets, and the gold span as context-token indices. The model never sees an
example whole: `llmkit.data.windows` cuts it into windows of `block_size` tokens (one
window when it fits), which is also where the `[BOS] prefix [EOS] context [EOS]` layout
lives. Character <-> token conversion goes only through the tokenizer's offsets.

Every check names what was found and what is allowed; a line that fails one is skipped and
reported by `llmkit prepare`, never repaired: a trace step without a span is not
relabelled, and a span that no token span can hold is not moved.

torch is imported only where batches are built, so that `llmkit prepare` starts quickly.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from llmkit.data.windows import (
    Window,
    context_room,
    cut_window,
    cut_windows,
    example_window_starts,
)
from llmkit.errors import DataError
from llmkit.tokenizer import PAD_ID, Tokenizer, check_token_ids
from llmkit.tokenizer.offsets import char_span_to_token_span, token_span_to_char_span

TRACE_KEYS = ("trace_id", "step", "steps_total")
CONTEXT_FIELD = "context"  # the text spans point into, when a line has a prefix
PREFIX_FIELD = "question"  # the prefix (question) read before the context
GROUP_FIELD = "group"  # examples of one group stay on one side of the split


@dataclass(frozen=True, slots=True)
class SpanInput:
    """A data line that passed the checks that need no tokenizer."""

    text: str  # the context: what character spans index into
    char_span: tuple[int, int] | None  # None: no span
    source: str  # file:line
    trace: dict[str, Any]  # the trace keys present on the line (may be empty)
    prefix: str = ""  # the question / prefix ("" when the line has none)
    group: str | int | None = None  # the line's `group` field

    @property
    def split_key(self) -> bytes:
        """What keeps examples together in the train/validation split.

        `group`, else `trace_id`, else the context text: examples that share a context
        (several questions on one paragraph, or identical texts) always land on the same
        side, so validation never scores a paragraph the model was trained on.
        """
        if self.group is not None:
            return b"group:" + json.dumps(self.group).encode("utf-8")
        if "trace_id" in self.trace:
            return b"trace:" + str(self.trace["trace_id"]).encode("utf-8")
        return b"text:" + self.text.encode("utf-8")


@dataclass(frozen=True, slots=True)
class SpanExample:
    """One encoded example, as stored in the span cache (one JSON object per line)."""

    prefix_ids: list[int]  # the prefix's tokens ([] without a prefix)
    ids: list[int]  # the context's tokens, no special tokens
    offsets: list[tuple[int, int]]  # character offsets of each context token
    token_span: tuple[int, int] | None  # the gold span as context-token indices (exclusive)
    char_span: tuple[int, int] | None  # the span in the data
    text: str  # the context
    source: str  # file:line of the data line
    trace: dict[str, Any]  # trace_id / step / steps_total when the data has them
    prefix: str = ""

    @property
    def widened(self) -> bool:
        """True when the token span covers more characters than the data's span.

        That happens when a span edge falls inside a token: the model can only predict
        whole tokens, so exact match is out of reach for this example.
        """
        if self.char_span is None or self.token_span is None:
            return False
        return token_span_to_char_span(self.offsets, *self.token_span) != self.char_span

    def room(self, block_size: int) -> int:
        """Context tokens per window next to this example's prefix."""
        return context_room(block_size, len(self.prefix_ids))

    def window_starts(self, block_size: int, stride: int | None) -> list[int]:
        """The first context token of each of this example's windows."""
        return example_window_starts(len(self.ids), len(self.prefix_ids), block_size, stride)

    def window(self, index: int, first: int, block_size: int) -> Window:
        """The window starting at context token `first`; `index` is this example's index."""
        return cut_window(index, self.prefix_ids, self.ids, self.offsets, self.token_span,
                          first, self.room(block_size))

    def windows(self, index: int, block_size: int, stride: int | None) -> list[Window]:
        """All windows of this example, in order."""
        return cut_windows(index, self.prefix_ids, self.ids, self.offsets, self.token_span,
                           block_size, stride)

    def __getitem__(self, name: str) -> Any:
        """A field by the name it has in the cache line (`ex["text"]` == `ex.text`)."""
        if name in TRACE_KEYS:
            return self.trace[name]
        if name not in self.__slots__:
            raise KeyError(name)
        return getattr(self, name)

    def to_json(self) -> str:
        """One line of the span cache."""
        record: dict[str, Any] = {
            "prefix_ids": self.prefix_ids, "ids": self.ids, "offsets": self.offsets,
            "token_span": self.token_span, "char_span": self.char_span, "text": self.text,
            "prefix": self.prefix, "source": self.source,
        }
        record.update(self.trace)
        return json.dumps(record, ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, line: str) -> SpanExample:
        """Read back a line written by `to_json`."""
        r = json.loads(line)
        char_span, token_span = r["char_span"], r["token_span"]
        return cls(
            prefix_ids=r["prefix_ids"], ids=r["ids"],
            offsets=[(s, e) for s, e in r["offsets"]],
            token_span=None if token_span is None else (token_span[0], token_span[1]),
            char_span=None if char_span is None else (char_span[0], char_span[1]),
            text=r["text"], prefix=r["prefix"], source=r["source"],
            trace={k: r[k] for k in TRACE_KEYS if k in r},
        )


class SpanProblem(Exception):
    """A data line that cannot be used: `kind` is what skips are counted by."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _string_field(obj: dict[str, Any], name: str, *, required: bool) -> str:
    from llmkit.data.sources import missing_field

    if name not in obj:
        if required:
            raise SpanProblem("missing text", missing_field(name, obj))
        return ""
    value = obj[name]
    if not isinstance(value, str):
        raise SpanProblem("text not a string", f"{name!r} is {type(value).__name__}, not a "
                                                f"string")
    if required and not value:
        raise SpanProblem("empty text", f"{name!r} is empty")
    return value


def parse_span_line(obj: dict[str, Any], source: str, text_field: str = "text", *,
                    need_span: bool = True) -> SpanInput:
    """Check one JSON object against the span data format (everything but tokenization).

    `need_span=False` reads an input to predict on: the span may be missing (and is then
    no span, as far as this object is concerned).

    Raises:
        SpanProblem: the line breaks the format; the message says what and how to fix it.
    """
    has_context = CONTEXT_FIELD in obj and text_field != CONTEXT_FIELD
    if has_context and text_field in obj:
        raise SpanProblem("text and context", f"the line has both {text_field!r} and "
                                              f"{CONTEXT_FIELD!r}: give the text spans point "
                                              f"into as one of them")
    if not has_context and PREFIX_FIELD in obj and text_field != PREFIX_FIELD:
        raise SpanProblem("question without context",
                          f"{PREFIX_FIELD!r} needs a {CONTEXT_FIELD!r} field beside it (the "
                          f"text the span points into); rename {text_field!r} to "
                          f"{CONTEXT_FIELD!r}")
    text = _string_field(obj, CONTEXT_FIELD if has_context else text_field, required=True)
    prefix = _string_field(obj, PREFIX_FIELD, required=False) if has_context else ""
    name = CONTEXT_FIELD if has_context else "text"
    if "span" not in obj and need_span:
        raise SpanProblem("missing span", 'no "span" field; give [start, end] or null for '
                                          '"no span"')
    span = obj.get("span")
    char_span: tuple[int, int] | None = None
    if span is not None:
        if not (isinstance(span, list) and len(span) == 2 and all(_is_int(v) for v in span)):
            raise SpanProblem("bad span", f'"span" must be [start, end] (two integers) or '
                                          f'null, found {json.dumps(span)}')
        start, end = span
        if start < 0 or end > len(text):
            raise SpanProblem("span out of bounds",
                              f"span [{start}, {end}] is outside the {name} of {len(text)} "
                              f"characters (0-based character offsets, end exclusive)")
        if start >= end:
            raise SpanProblem("empty span", f"span [{start}, {end}] is empty or reversed "
                                            f"(start must be < end); use null for no span")
        char_span = (start, end)
    group = obj.get(GROUP_FIELD)
    if group is not None and not (isinstance(group, str) or _is_int(group)):
        raise SpanProblem("bad group", f'"{GROUP_FIELD}" must be a string or an integer, '
                                       f"found {json.dumps(group)}")
    trace = _check_trace(obj, char_span) if need_span else {}
    return SpanInput(text=text, char_span=char_span, source=source, trace=trace,
                     prefix=prefix, group=group)


def _check_trace(obj: dict[str, Any], char_span: tuple[int, int] | None) -> dict[str, Any]:
    trace = {k: obj[k] for k in TRACE_KEYS if k in obj}
    if "trace_id" in trace and not isinstance(trace["trace_id"], (str, int)):
        raise SpanProblem("bad trace fields", f'"trace_id" must be a string or an integer, '
                                              f'found {json.dumps(trace["trace_id"])}')
    has_step, has_total = "step" in trace, "steps_total" in trace
    if has_step != has_total:
        only = "step" if has_step else "steps_total"
        raise SpanProblem("bad trace fields",
                          f'"step" and "steps_total" go together; this line has only "{only}"')
    if not has_step:
        return trace
    step, total = trace["step"], trace["steps_total"]
    if not (_is_int(step) and _is_int(total) and 0 <= step < total):
        raise SpanProblem("bad trace fields",
                          f'"step" must be an integer in [0, steps_total) and "steps_total" '
                          f"an integer >= 1, found step={json.dumps(step)}, "
                          f"steps_total={json.dumps(total)}")
    if char_span is None and step != total - 1:
        name = f" of trace {json.dumps(trace['trace_id'])}" if "trace_id" in trace else ""
        raise SpanProblem("no span before the final step",
                          f"span is null on step {step}{name} with {total} steps: only the "
                          f"final step (step {total - 1}) may have no span; fix the data "
                          f"(llmkit does not relabel it)")
    return trace


def encode_span_example(inp: SpanInput, prefix_ids: Sequence[int], ids: Sequence[int],
                        offsets: Sequence[Sequence[int]], block_size: int,
                        stride: int | None = None) -> SpanExample:
    """Convert the character span of a checked line to context tokens.

    Args:
        inp: a checked data line.
        prefix_ids: `Tokenizer.encode(inp.prefix)` ([] without a prefix).
        ids, offsets: `Tokenizer.encode_offsets(inp.text)`.
        block_size: the model's context; a long text becomes several windows, but the
            prefix must leave room for context in each.
        stride: `data.window_stride` (None: half of each window's context).

    Raises:
        SpanProblem: the prefix leaves no room for context, the stride is longer than a
            window's context, or no token span holds the character span.
    """
    room = context_room(block_size, len(prefix_ids))
    if room < 1:
        raise SpanProblem("question too long",
                          f"the {PREFIX_FIELD} is {len(prefix_ids)} tokens: with <bos> and "
                          f"two <eos> it leaves no room for context in model.block_size "
                          f"{block_size}; shorten it or raise model.block_size")
    if stride is not None and stride > room:
        raise SpanProblem("stride longer than window",
                          f"data.window_stride {stride} is longer than the {room} context "
                          f"tokens a window holds beside this {PREFIX_FIELD} of "
                          f"{len(prefix_ids)} tokens, so windows would skip text; lower "
                          f"data.window_stride or raise model.block_size")
    context_offsets = [(int(s), int(e)) for s, e in offsets]
    token_span = None
    if inp.char_span is not None:
        token_span = char_span_to_token_span(context_offsets, *inp.char_span)
        if token_span is None:
            s, e = inp.char_span
            raise SpanProblem("span not covered by tokens",
                              f"span [{s}, {e}] ({inp.text[s:e]!r}) starts or ends on a "
                              f"character that belongs to no token (bpe leaves spaces out "
                              f"of tokens); strip spaces from the span's edges")
    return SpanExample(prefix_ids=list(prefix_ids), ids=list(ids), offsets=context_offsets,
                       token_span=token_span, char_span=inp.char_span, text=inp.text,
                       source=inp.source, trace=inp.trace, prefix=inp.prefix)


def encode_span_inputs(tok: Tokenizer, inputs: Sequence[SpanInput], block_size: int,
                       stride: int | None = None
                       ) -> list[SpanExample | SpanProblem]:
    """Encode many checked lines at once (one batched tokenizer call for the contexts and
    one for the prefixes); a line that cannot be used gives its `SpanProblem` in place.

    The one way from data lines to examples: `llmkit prepare` and `llmkit predict` both
    call it, so the two cannot encode a text differently.
    """
    contexts = tok.encode_offsets_batch([inp.text for inp in inputs])
    prefixed = [i for i, inp in enumerate(inputs) if inp.prefix]
    prefix_ids: list[list[int]] = [[] for _ in inputs]
    if prefixed:
        for i, ids in zip(prefixed, tok.encode_batch([inputs[i].prefix for i in prefixed]),
                          strict=True):
            prefix_ids[i] = ids
    out: list[SpanExample | SpanProblem] = []
    for inp, pids, (ids, offsets) in zip(inputs, prefix_ids, contexts, strict=True):
        try:
            out.append(encode_span_example(inp, pids, ids, offsets, block_size, stride))
        except SpanProblem as p:
            out.append(p)
    return out

class SpanDataset:
    """The windows of one split of the span cache (`train.jsonl` or `val.jsonl`).

    Map-style over WINDOWS: `dataset[i]` is `(i, Window)`, cut when asked for (an
    example's windows are a pure function of the example, `block_size` and `stride`).
    `dataset.examples[w.example]` gives the text, char_span and offsets of the example a
    window came from to the metrics and sample callbacks.

    Args:
        cache_jsonl: `train.jsonl` or `val.jsonl` of the span cache.
        block_size: tokens per window (`model.block_size`).
        stride: `data.window_stride` (None: half of each window's context).
        vocab_size: check every id against it when given.
        max_examples: keep only this many examples, a seeded random choice (in file
            order), so that a cap on validation does not score only the first topic of
            the file; None keeps every example.
        seed: seeds that choice.
    """

    def __init__(self, cache_jsonl: str | Path, block_size: int, stride: int | None = None,
                 vocab_size: int | None = None, max_examples: int | None = None,
                 seed: int = 0) -> None:
        """Load the examples and list their windows.

        Raises:
            DataError: the file is missing or holds no example.
            TokenIdError: an id is outside the vocabulary.
        """
        path = Path(cache_jsonl)
        if not path.is_file():
            raise DataError(f"{path} does not exist; run `llmkit prepare`")
        with open(path, encoding="utf-8") as fh:
            examples = [SpanExample.from_json(line) for line in fh if line.strip()]
        if not examples:
            raise DataError(f"{path} holds no example; run `llmkit prepare` and check its "
                            f"report for skipped lines")
        self.total_examples = len(examples)
        if max_examples is not None and max_examples < len(examples):
            keep = np.random.default_rng(seed).choice(len(examples), max_examples,
                                                      replace=False)
            examples = [examples[i] for i in sorted(keep.tolist())]
        self.examples = examples
        if vocab_size is not None:
            biggest = max(max([*e.ids, *e.prefix_ids], default=0) for e in examples)
            check_token_ids([biggest], vocab_size, str(path))
        self.path, self.block_size = path, block_size
        self._where = [(i, first) for i, ex in enumerate(examples)
                       for first in ex.window_starts(block_size, stride)]

    def __len__(self) -> int:
        return len(self._where)

    def __getitem__(self, i: int) -> tuple[int, Window]:
        # The index travels with the window so that a batch can point back at it.
        example, first = self._where[i]
        return i, self.examples[example].window(example, first, self.block_size)


def collate_spans(batch: Sequence[tuple[int, Window]], pad_id: int = PAD_ID) -> dict[str, Any]:
    """Pad a list of `(index, window)` to the batch's longest window.

    Returns a dict of tensors: `ids (B, T)` int64, `mask (B, T)` bool (True on real
    positions, BOS and EOS included), `context (B, T)` bool (True on the context tokens,
    the only positions a span may cover), `start (B,)` and `end (B,)` int64 (the window's
    target token span; 0, 0 for no span), `index (B,)` int64 (the window's index in the
    dataset), `example (B,)` int64 (its example's index), and `n_tokens`, the number of
    real tokens as a plain int (counted here on the CPU, so throughput logging needs no
    device sync).
    """
    import torch

    longest = max(len(w.ids) for _, w in batch)
    ids = torch.full((len(batch), longest), pad_id, dtype=torch.int64)
    mask = torch.zeros((len(batch), longest), dtype=torch.bool)
    context = torch.zeros((len(batch), longest), dtype=torch.bool)
    for row, (_, w) in enumerate(batch):
        ids[row, : len(w.ids)] = torch.tensor(w.ids, dtype=torch.int64)
        mask[row, : len(w.ids)] = True
        context[row, w.context[0]:w.context[1]] = True
    return {
        "ids": ids,
        "mask": mask,
        "context": context,
        "start": torch.tensor([w.span[0] for _, w in batch], dtype=torch.int64),
        "end": torch.tensor([w.span[1] for _, w in batch], dtype=torch.int64),
        "index": torch.tensor([i for i, _ in batch], dtype=torch.int64),
        "example": torch.tensor([w.example for _, w in batch], dtype=torch.int64),
        "n_tokens": sum(len(w.ids) for _, w in batch),
    }


class WindowRows:
    """The windows of a batch and their indices in the dataset, in row order: what span
    decoding needs besides the tensors.

    Deliberately neither a list nor a dataclass: Lightning moves a batch to the device with
    `apply_to_collection`, which walks into lists and dataclasses (and refuses a frozen one
    such as `Window`); an object of its own passes through as it is.
    """

    def __init__(self, indices: list[int], windows: list[Window]) -> None:
        self.indices = indices
        self.windows = windows


def collate_val_spans(batch: Sequence[tuple[int, Window]], pad_id: int = PAD_ID
                      ) -> dict[str, Any]:
    """`collate_spans` plus `windows`, a `WindowRows` of the batch's windows, so that
    validation decodes spans without cutting the windows again or reading `index` back
    from the device. Training batches go without (workers would pickle every window)."""
    out = collate_spans(batch, pad_id)
    out["windows"] = WindowRows([i for i, _ in batch], [w for _, w in batch])
    return out


class SpanBatchStream:
    """Endless, resumable, rank-sharded batches of example indices (a DataLoader batch_sampler).

    The global batch stream walks one seeded permutation of the examples per epoch, epoch
    after epoch; batch `j` of rank `r` is global batch `j * world_size + r`. So, as for LM
    windows, a run resumed at `start_batch` sees exactly the batches an uninterrupted run
    would have seen, and under DDP every rank gets its own share of the data.

    Args:
        n_examples: examples in the training set (>= 1).
        batch_size: examples per batch (per rank).
        seed: seeds the permutation of each epoch.
        start_batch: batches this rank has already trained on.
        rank, world_size: this process's share under DDP/FSDP.

    Example:
        >>> DataLoader(dataset, batch_sampler=SpanBatchStream(len(dataset), 32, seed=1))
    """

    def __init__(self, n_examples: int, batch_size: int, seed: int, *, start_batch: int = 0,
                 rank: int = 0, world_size: int = 1) -> None:
        if n_examples < 1 or batch_size < 1 or start_batch < 0 or not 0 <= rank < world_size:
            raise ValueError(f"bad SpanBatchStream arguments: n_examples={n_examples}, "
                             f"batch_size={batch_size}, start_batch={start_batch}, "
                             f"rank={rank}, world_size={world_size}")
        self.n, self.batch_size, self.seed = n_examples, batch_size, seed
        self.start_batch, self.rank, self.world_size = start_batch, rank, world_size

    def _permutation(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(self.n)

    def batch(self, g: int) -> list[int]:
        """Global batch `g`: `batch_size` consecutive positions of the epoch stream."""
        first = g * self.batch_size
        out: list[int] = []
        epoch, pos = divmod(first, self.n)
        perm = self._permutation(epoch)
        while len(out) < self.batch_size:
            take = min(self.batch_size - len(out), self.n - pos)
            out.extend(perm[pos:pos + take].tolist())
            pos += take
            if pos == self.n:  # the batch runs into the next epoch
                epoch, pos = epoch + 1, 0
                perm = self._permutation(epoch)
        return out

    def __iter__(self) -> Iterator[list[int]]:
        j = self.start_batch
        while True:
            yield self.batch(j * self.world_size + self.rank)
            j += 1
