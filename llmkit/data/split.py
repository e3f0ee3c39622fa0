"""The split policy: which documents (traces, examples) go to validation.

Validation data is split off by document (or by trace / example for spans), never by
cutting windows out of one stream: a document goes to val when a keyed hash of its text
(or trace id) falls below `data.val_fraction`. The hash is stable across runs and
machines, and identical documents always land on the same side. When the hash leaves one
side empty, the pass is redone with one document moved (`check_sides`).
"""

from __future__ import annotations

from llmkit.console import Log
from llmkit.data.hashing import digest64
from llmkit.data.sources import SourceFile
from llmkit.errors import DataError


class HashSplit:
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
        b = int.from_bytes(digest64(self._salt + key), "little")
        self.lowest = b if self.lowest is None else min(self.lowest, b)
        self.highest = b if self.highest is None else max(self.highest, b)
        if b == self.force_val:
            return True
        if b == self.force_train:
            return False
        return b < self._threshold


def check_sides(files: list[tuple[SourceFile, str]], split: HashSplit, n_train: int,
                n_val: int, unit: str, skipped: int, log: Log) -> HashSplit | None:
    """None when train and val both hold data; a split to redo the pass with when the hash
    split left one side empty.

    Raises:
        DataError: nothing usable at all, or on one side of a data.val split, or too few
            documents to split (`skipped` lines are named as a likely cause).
    """
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


def _fix_split(split: HashSplit, n_train: int, n_val: int, unit: str, log: Log) -> HashSplit | None:
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
        return HashSplit(split.seed, split.fraction, force_val=split.lowest)
    log(f"note: all {n} {unit}s fell in the validation split by hash (data.val_fraction "
        f"{split.fraction:g}); keeping the last {unit} in hash order for training")
    return HashSplit(split.seed, split.fraction, force_train=split.highest)
