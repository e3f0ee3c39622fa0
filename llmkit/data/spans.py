"""Span examples: checking a data line, encoding it for the model, serving it in batches.

A data line is `{"text": str, "span": [start, end] | null}` with character offsets and an
exclusive end, optionally with `trace_id`, `step` (0-based) and `steps_total` when the
examples are the steps of a trace. The model sees `[BOS] tokens [EOS]`; the offsets of
those positions (BOS `(0, 0)`, EOS `(len, len)`) go through
`llmkit.tokenizer.offsets.char_span_to_token_span`, which answers in model positions
directly. "No span" is the token span `(0, 0)`, pointing at BOS.

Every check names what was found and what is allowed; a line that fails one is skipped and
reported by `llmkit prepare`, never repaired: an example longer than the context is not
truncated, and a trace step without a span is not relabelled.

torch is imported only where batches are built, so that `llmkit prepare` starts quickly.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from llmkit.errors import DataError
from llmkit.tokenizer import BOS_ID, EOS_ID, PAD_ID, check_token_ids
from llmkit.tokenizer.offsets import char_span_to_token_span, token_span_to_char_span

TRACE_KEYS = ("trace_id", "step", "steps_total")


@dataclass(frozen=True, slots=True)
class SpanInput:
    """A data line that passed the checks that need no tokenizer."""

    text: str
    char_span: tuple[int, int] | None  # None: no span
    source: str  # file:line
    trace: dict[str, Any]  # the trace keys present on the line (may be empty)


@dataclass(frozen=True, slots=True)
class SpanExample:
    """One encoded example, as stored in the span cache (one JSON object per line)."""

    ids: list[int]  # [BOS] tokens [EOS]
    offsets: list[tuple[int, int]]  # character offsets per model position
    span: tuple[int, int]  # token span, exclusive; (0, 0) = no span
    char_span: tuple[int, int] | None  # the span in the data
    text: str
    source: str  # file:line of the data line
    trace: dict[str, Any]  # trace_id / step / steps_total when the data has them

    @property
    def widened(self) -> bool:
        """True when the token span covers more characters than the data's span.

        That happens when a span edge falls inside a token: the model can only predict
        whole tokens, so exact match is out of reach for this example.
        """
        if self.char_span is None:
            return False
        return token_span_to_char_span(self.offsets, *self.span) != self.char_span

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
            "ids": self.ids, "offsets": self.offsets, "span": self.span,
            "char_span": self.char_span, "text": self.text, "source": self.source,
        }
        record.update(self.trace)
        return json.dumps(record, ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, line: str) -> SpanExample:
        """Read back a line written by `to_json`."""
        r = json.loads(line)
        char_span = r["char_span"]
        return cls(
            ids=r["ids"], offsets=[(s, e) for s, e in r["offsets"]], span=tuple(r["span"]),
            char_span=None if char_span is None else (char_span[0], char_span[1]),
            text=r["text"], source=r["source"],
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


def parse_span_line(obj: dict[str, Any], source: str, text_field: str = "text") -> SpanInput:
    """Check one JSON object against the span data format (everything but tokenization).

    Raises:
        SpanProblem: the line breaks the format; the message says what and how to fix it.
    """
    from llmkit.data.sources import missing_field

    if text_field not in obj:
        raise SpanProblem("missing text", missing_field(text_field, obj))
    text = obj[text_field]
    if not isinstance(text, str):
        raise SpanProblem("text not a string",
                          f"{text_field!r} is {type(text).__name__}, not a string")
    if not text:
        raise SpanProblem("empty text", f"{text_field!r} is empty")
    if "span" not in obj:
        raise SpanProblem("missing span", 'no "span" field; give [start, end] or null for '
                                          '"no span"')
    span = obj["span"]
    char_span: tuple[int, int] | None = None
    if span is not None:
        if not (isinstance(span, list) and len(span) == 2 and all(_is_int(v) for v in span)):
            raise SpanProblem("bad span", f'"span" must be [start, end] (two integers) or '
                                          f'null, found {json.dumps(span)}')
        start, end = span
        if start < 0 or end > len(text):
            raise SpanProblem("span out of bounds",
                              f"span [{start}, {end}] is outside the text of {len(text)} "
                              f"characters (0-based character offsets, end exclusive)")
        if start >= end:
            raise SpanProblem("empty span", f"span [{start}, {end}] is empty or reversed "
                                            f"(start must be < end); use null for no span")
        char_span = (start, end)
    trace = _check_trace(obj, char_span)
    return SpanInput(text=text, char_span=char_span, source=source, trace=trace)


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


def model_input(text: str, ids: Sequence[int], offsets: Sequence[Sequence[int]],
                block_size: int) -> tuple[list[int], list[tuple[int, int]]]:
    """`[BOS] ids [EOS]` and the character offsets of each of those model positions.

    BOS gets `(0, 0)` and EOS `(len(text), len(text))`: empty offsets, so span conversion
    never lands on them. Used for training data and for `llmkit predict` alike.

    Raises:
        SpanProblem: the input is longer than `block_size` (it is never truncated).
    """
    model_ids = [BOS_ID, *ids, EOS_ID]
    if len(model_ids) > block_size:
        raise SpanProblem("too long", f"too long: {len(model_ids)} tokens > block_size "
                                      f"{block_size} (BOS and EOS included); raise "
                                      f"model.block_size or shorten the text (examples are "
                                      f"never truncated)")
    n = len(text)
    return model_ids, [(0, 0), *((int(s), int(e)) for s, e in offsets), (n, n)]


def encode_span_example(inp: SpanInput, ids: list[int], offsets: Sequence[Sequence[int]],
                        block_size: int) -> SpanExample:
    """Wrap the tokens of `inp.text` in BOS/EOS and convert the character span.

    Args:
        inp: a checked data line.
        ids, offsets: `Tokenizer.encode_offsets(inp.text)`.
        block_size: the model's context length; longer examples are refused, not cut.

    Raises:
        SpanProblem: the example is too long, or no token span holds the character span.
    """
    model_ids, model_offsets = model_input(inp.text, ids, offsets, block_size)
    span = (0, 0)
    if inp.char_span is not None:
        found = char_span_to_token_span(model_offsets, *inp.char_span)
        if found is None:
            s, e = inp.char_span
            raise SpanProblem("span not covered by tokens",
                              f"span [{s}, {e}] ({inp.text[s:e]!r}) starts or ends on a "
                              f"character that belongs to no token (bpe leaves spaces out "
                              f"of tokens); strip spaces from the span's edges")
        span = found
    return SpanExample(ids=model_ids, offsets=model_offsets, span=span,
                       char_span=inp.char_span, text=inp.text, source=inp.source,
                       trace=inp.trace)


class SpanDataset:
    """The examples of one split of the span cache (`train.jsonl` or `val.jsonl`).

    Map-style: `dataset[i]` is `SpanExample` i, and `dataset.examples[i]` gives the text,
    char_span and offsets to the metrics and sample callbacks by the `index` of a batch.
    """

    def __init__(self, cache_jsonl: str | Path, vocab_size: int | None = None) -> None:
        """Load every example; check the ids against `vocab_size` when it is given.

        Raises:
            DataError: the file is missing or holds no example.
            TokenIdError: an id is outside the vocabulary.
        """
        path = Path(cache_jsonl)
        if not path.is_file():
            raise DataError(f"{path} does not exist; run `llmkit prepare`")
        with open(path, encoding="utf-8") as fh:
            self.examples = [SpanExample.from_json(line) for line in fh if line.strip()]
        if not self.examples:
            raise DataError(f"{path} holds no example; run `llmkit prepare` and check its "
                            f"report for skipped lines")
        if vocab_size is not None:
            biggest = max(max(e.ids) for e in self.examples)
            check_token_ids([biggest], vocab_size, str(path))
        self.path = path

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> tuple[int, SpanExample]:
        # The index travels with the example so that a batch can point back at its text.
        return i, self.examples[i]


def collate_spans(batch: Sequence[tuple[int, SpanExample]], pad_id: int = PAD_ID
                  ) -> dict[str, Any]:
    """Pad a list of `(index, example)` to the batch's longest example.

    Returns a dict of tensors: `ids (B, T)` int64, `mask (B, T)` bool (True on real
    positions, BOS and EOS included), `start (B,)` and `end (B,)` int64 (token span; 0, 0
    for no span), `index (B,)` int64 into the dataset, and `n_tokens`, the number of real
    tokens as a plain int (counted here on the CPU, so throughput logging needs no device
    sync).
    """
    import torch

    longest = max(len(ex.ids) for _, ex in batch)
    ids = torch.full((len(batch), longest), pad_id, dtype=torch.int64)
    mask = torch.zeros((len(batch), longest), dtype=torch.bool)
    for row, (_, ex) in enumerate(batch):
        ids[row, : len(ex.ids)] = torch.tensor(ex.ids, dtype=torch.int64)
        mask[row, : len(ex.ids)] = True
    return {
        "ids": ids,
        "mask": mask,
        "start": torch.tensor([ex.span[0] for _, ex in batch], dtype=torch.int64),
        "end": torch.tensor([ex.span[1] for _, ex in batch], dtype=torch.int64),
        "index": torch.tensor([i for i, _ in batch], dtype=torch.int64),
        "n_tokens": sum(len(ex.ids) for _, ex in batch),
    }


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
