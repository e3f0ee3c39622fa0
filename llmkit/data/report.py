"""The data report: what `llmkit prepare` found, in numbers (verdicts on them are
`llmkit.preflight`'s findings).

Counts of documents and tokens per split, bytes per token, how much of the vocabulary the
training data uses (a tokenizer much bigger than the data leaves rows of the embedding
untrained), and how much validation text also occurs verbatim in the training text (if it
does, validation loss measures memory, not generalisation).

The overlap estimate hashes every window of `WINDOW` consecutive tokens that lies inside
one document (windows that hold EOS are left out). To keep memory bounded on any corpus,
only windows whose hash falls in one of `sample` buckets are kept, on both sides: a
validation window that occurs in the training text has the same hash there, so it is kept
on both sides or on neither, and the estimate stays unbiased. Small corpora are checked
exhaustively (`sample == 1`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from llmkit.data.hashing import splitmix64
from llmkit.data.npy import NpyFile

WINDOW = 32  # tokens per window of the overlap estimate
MAX_TRAIN_WINDOWS = 1 << 21  # hashes kept from the training data (16 MiB of uint64)
CHUNK = 1 << 20  # tokens read from a memmap at a time (~40 MB of temporaries)

_P = np.uint64(0x100000001B3)  # multiplier of the polynomial rolling hash (FNV prime)


@dataclass
class DataReport:
    """The numbers of one prepared cache; `format()` for the console, `to_dict()` for JSON."""

    task: str
    documents_train: int  # documents (lm) or examples kept (span)
    documents_val: int
    tokens_train: int  # BOS/EOS included
    tokens_val: int
    bytes_train: int  # UTF-8 bytes of the text
    bytes_val: int
    vocab_size: int
    vocab_used: int  # distinct ids occurring in the training data
    overlap: float | None = None  # lm: share of val windows also in train (None: none checked)
    overlap_windows: int = 0  # val windows checked
    overlap_sample: int = 1  # 1 in `overlap_sample` windows checked
    skipped: dict[str, int] = field(default_factory=dict)  # lines skipped, by reason
    # span only
    nospan_train: int | None = None
    nospan_val: int | None = None
    duplicate_val_texts: int | None = None  # val examples whose text/context is also in train
    widened_spans: int | None = None  # spans that do not end on token boundaries
    windows_train: int | None = None  # model inputs the examples are cut into
    windows_val: int | None = None
    example_tokens: dict[str, int] | None = None  # length percentiles (see length_percentiles)
    multi_window_examples: int | None = None  # examples longer than block_size
    block_size: int | None = None  # the context the windows were cut for
    links: list[str] = field(default_factory=list)  # symlinks not followed, files read once
    bom_files: int = 0  # files that began with a UTF-8 byte-order mark (removed, not text)

    @property
    def bytes_per_token(self) -> float | None:
        """Text bytes per text token in train (specials left out of the count)."""
        return self._bytes_per_token(self.bytes_train, self.tokens_train, self.documents_train)

    @property
    def val_bytes_per_token(self) -> float | None:
        """Text bytes per text token in validation: bits per token over this is bits per
        byte (specials left out, as in `bytes_per_token`)."""
        return self._bytes_per_token(self.bytes_val, self.tokens_val, self.documents_val)

    def _bytes_per_token(self, n_bytes: int, tokens: int, documents: int) -> float | None:
        specials = documents * (2 if self.task == "span" else 1)
        text_tokens = tokens - specials
        return n_bytes / text_tokens if text_tokens > 0 else None

    def _windows_per_example(self) -> str:
        examples = self.documents_train + self.documents_val
        windows = (self.windows_train or 0) + (self.windows_val or 0)
        return f"{windows / examples:.2f} per example" if examples else "no example"

    @property
    def vocab_use(self) -> float:
        """Share of the vocabulary's ids that occur in the training data."""
        return self.vocab_used / self.vocab_size if self.vocab_size else 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain data for meta.json (the derived ratios included)."""
        d = asdict(self)
        d["bytes_per_token"] = self.bytes_per_token
        d["vocab_use"] = self.vocab_use
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DataReport:
        """The report saved in meta.json["report"]."""
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in d.items() if k in names})

    def format(self) -> str:
        """A few aligned lines for the console."""
        unit = "examples" if self.task == "span" else "documents"
        lines = [
            f"  {unit:<16} train {self.documents_train:,}   val {self.documents_val:,}",
            f"  {'tokens':<16} train {self.tokens_train:,}   val {self.tokens_val:,}",
        ]
        bpt = self.bytes_per_token
        if bpt is not None:
            lines.append(f"  {'bytes per token':<16} {bpt:.2f} (training text)")
        lines.append(f"  {'vocabulary use':<16} {self.vocab_used:,} of {self.vocab_size:,} "
                     f"ids occur in train ({self.vocab_use:.1%})")
        if self.task == "lm":
            if self.overlap is None:
                lines.append(f"  {'val overlap':<16} not measured (no {WINDOW}-token window "
                             f"inside a validation document)")
            else:
                sample = f", 1 in {self.overlap_sample} sampled" if self.overlap_sample > 1 else ""
                lines.append(f"  {'val overlap':<16} {self.overlap:.1%} of val {WINDOW}-token "
                             f"windows also occur in train ({self.overlap_windows:,} "
                             f"checked{sample})")
        else:
            for split, n, total in (("train", self.nospan_train, self.documents_train),
                                    ("val", self.nospan_val, self.documents_val)):
                if n is not None and total:
                    lines.append(f"  {'no-span ' + split:<16} {n:,} of {total:,} "
                                 f"({n / total:.1%})")
            if self.windows_train is not None and self.windows_val is not None:
                lines.append(f"  {'windows':<16} train {self.windows_train:,}   val "
                             f"{self.windows_val:,} ({self._windows_per_example()})")
            if self.example_tokens:
                lines.append(f"  {'example length':<16} {format_percentiles(self.example_tokens)}"
                             f" tokens; {self.multi_window_examples or 0:,} longer than "
                             f"block_size {self.block_size} (read in windows)")
            if self.duplicate_val_texts is not None:
                lines.append(f"  {'val overlap':<16} {self.duplicate_val_texts:,} val "
                             f"examples share their text/context with train")
            if self.widened_spans:
                lines.append(f"  {'widened spans':<16} {self.widened_spans:,} spans start or "
                             f"end inside a token (widened to whole tokens)")
        if self.bom_files:
            lines.append(f"  {'byte-order marks':<16} removed from the start of "
                         f"{self.bom_files:,} file(s) (not text, not trained on)")
        if self.links:
            more = f" (and {len(self.links) - 1} more)" if len(self.links) > 1 else ""
            lines.append(f"  {'links':<16} {self.links[0]}{more}")
        if self.skipped:
            total = sum(self.skipped.values())
            kinds = ", ".join(f"{k} {n:,}" for k, n in sorted(self.skipped.items(),
                                                             key=lambda kv: -kv[1]))
            lines.append(f"  {'skipped':<16} {total:,} lines: {kinds}")
        return "\n".join(lines)


PERCENTILES = (50, 90, 99)


def length_percentiles(lengths: list[int]) -> dict[str, int] | None:
    """`{"p50", "p90", "p99", "max"}` of example lengths in tokens (None: no example).

    Nearest-rank percentiles: each is a length some example really has.
    """
    if not lengths:
        return None
    ordered = sorted(lengths)
    n = len(ordered)
    out = {f"p{p}": ordered[max(0, math.ceil(p / 100 * n) - 1)] for p in PERCENTILES}
    out["max"] = ordered[-1]
    return out


def format_percentiles(p: dict[str, int]) -> str:
    """`median 120, p90 310, p99 890, max 2,048` for a `length_percentiles` result."""
    return (f"median {p['p50']:,}, p90 {p['p90']:,}, p99 {p['p99']:,}, max {p['max']:,}")


def vocab_counts(ids: np.ndarray | NpyFile, vocab_size: int, chunk: int = CHUNK) -> np.ndarray:
    """How often each id occurs in `ids` (a memmap is read `chunk` tokens at a time)."""
    counts = np.zeros(vocab_size, dtype=np.int64)
    for lo in range(0, len(ids), chunk):
        part = np.asarray(ids[lo:lo + chunk])
        counts += np.bincount(part, minlength=vocab_size)[:vocab_size]
    return counts


def window_hashes(ids: np.ndarray | NpyFile, eos_id: int, window: int = WINDOW, sample: int = 1,
                  chunk: int = CHUNK) -> Iterator[np.ndarray]:
    """Hashes of the `window`-token windows of `ids` that hold no EOS, chunk by chunk.

    Only hashes `h` with `h % sample == 0` are yielded: the same windows on every array.
    """
    n = len(ids)
    for lo in range(0, max(n - window + 1, 0), chunk):
        a = np.asarray(ids[lo:min(n, lo + chunk + window - 1)]).astype(np.uint64)
        m = len(a) - window + 1
        h = np.zeros(m, dtype=np.uint64)
        with np.errstate(over="ignore"):  # the hash lives modulo 2**64 on purpose
            for j in range(window):
                h = h * _P + a[j:j + m]
            h = splitmix64(h)
        eos = np.concatenate([[0], np.cumsum(a == eos_id)])
        keep = eos[window:window + m] == eos[:m]  # no EOS inside the window
        if sample > 1:
            keep &= (h % np.uint64(sample)) == 0
        yield h[keep]


def window_overlap(train: np.ndarray | NpyFile, val: np.ndarray | NpyFile, eos_id: int,
                   window: int = WINDOW, max_train_windows: int = MAX_TRAIN_WINDOWS
                   ) -> tuple[float | None, int, int]:
    """Share of val windows that also occur in train: `(share, val windows checked, sample)`.

    `share` is None when no val window could be checked (documents shorter than `window`).
    """
    sample = max(1, math.ceil(len(train) / max_train_windows))
    seen = np.unique(np.concatenate(
        [np.zeros(0, np.uint64), *window_hashes(train, eos_id, window, sample)]))
    checked = found = 0
    for h in window_hashes(val, eos_id, window, sample):
        checked += len(h)
        if len(seen):
            pos = np.minimum(np.searchsorted(seen, h), len(seen) - 1)
            found += int(np.count_nonzero(seen[pos] == h))
    return (found / checked if checked else None), checked, sample
