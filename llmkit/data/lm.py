"""Language-model windows over the prepared token ids (`train.npy`, `val.npy`).

Training windows start at pseudo-random offsets that are a pure function of `(seed,
sample index)`: no random state is carried along, so a run resumed at batch N sees
exactly the windows an uninterrupted run would have seen, with any number of DataLoader
workers and on any number of ranks (each rank takes its own share of the batch indices).

Validation windows are a fixed set of non-overlapping windows spread evenly over the
validation ids: the same every validation, so validation losses are comparable.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from llmkit.data.hashing import splitmix64
from llmkit.errors import DataError
from llmkit.tokenizer import check_token_ids

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


class _Ids:
    """A lazily opened memmap of a token-id file.

    Lazily, and dropped when pickled, so that DataLoader workers started with `spawn`
    (macOS, Windows) open the file themselves instead of receiving a copy of the data.
    """

    def __init__(self, path: str | Path, vocab_size: int | None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(f"{self.path} does not exist; run `llmkit prepare`")
        self._ids: np.ndarray | None = None
        if vocab_size is not None:
            # One pass over the file: ids enter the model only after this check.
            check_token_ids(self.ids, vocab_size, str(self.path))

    @property
    def ids(self) -> np.ndarray:
        if self._ids is None:
            self._ids = np.load(self.path, mmap_mode="r")
        return self._ids

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_ids": None}


class LMTrainWindows(IterableDataset):
    """Endless batches of random training windows, reproducible from `(seed, batch index)`.

    Each item is a whole batch `(x, y)` of int64 tensors of shape `(batch_size,
    block_size)`, `y` being `x` shifted by one token; use it with `DataLoader(batch_size=
    None)`. Batch `j` of rank `r` is global batch `g = j * world_size + r`, made of the
    samples `g * batch_size ...`; sample `k` starts at `hash(seed, k) % (n - block_size)`.

    Args:
        ids_path: `train.npy` of the cache.
        block_size: tokens per window.
        batch_size: windows per batch (per rank).
        seed: the run's seed (`project.seed`).
        start_batch: batches this rank has already trained on; resuming at `start_batch =
            N` continues with exactly the batches an uninterrupted run sees after N.
        rank, world_size: this process's share of the batches under DDP/FSDP.
        vocab_size: when given, every id is checked against it once, up front.

    Raises:
        DataError: the file is missing or holds fewer than `block_size + 1` tokens.

    Example:
        >>> ds = LMTrainWindows("data/.cache/train.npy", 128, 16, seed=1337)
        >>> loader = DataLoader(ds, batch_size=None, num_workers=2)
    """

    def __init__(self, ids_path: str | Path, block_size: int, batch_size: int, seed: int, *,
                 start_batch: int = 0, rank: int = 0, world_size: int = 1,
                 vocab_size: int | None = None) -> None:
        super().__init__()
        if block_size < 1 or batch_size < 1 or start_batch < 0 or not 0 <= rank < world_size:
            raise ValueError(f"bad arguments: block_size={block_size}, batch_size="
                             f"{batch_size}, start_batch={start_batch}, rank={rank}, "
                             f"world_size={world_size}")
        self._ids = _Ids(ids_path, vocab_size)
        self.n = len(self._ids.ids)
        if self.n < block_size + 1:
            raise DataError(
                f"{ids_path} holds {self.n} training tokens, fewer than block_size + 1 = "
                f"{block_size + 1} needed for one training window; add training data or lower "
                f"model.block_size"
            )
        self.block_size, self.batch_size, self.seed = block_size, batch_size, seed
        self.start_batch, self.rank, self.world_size = start_batch, rank, world_size

    def starts(self, samples: np.ndarray) -> np.ndarray:
        """Start offsets of the windows of global sample indices `samples`."""
        k = np.asarray(samples, dtype=np.uint64)
        with np.errstate(over="ignore"):
            h = splitmix64(k * _GOLDEN + np.uint64(self.seed % 2**64))
        return (h % np.uint64(self.n - self.block_size)).astype(np.int64)

    def windows(self, samples: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """`(x, y)` for global sample indices `samples`: int64 tensors `(len, block_size)`."""
        idx = self.starts(samples)[:, None] + np.arange(self.block_size + 1)
        rows = torch.from_numpy(self._ids.ids[idx].astype(np.int64))
        return rows[:, :-1], rows[:, 1:]

    def batch(self, j: int) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's batch number `j` (0-based, counting from the start of training)."""
        g = j * self.world_size + self.rank
        return self.windows(np.arange(g * self.batch_size, (g + 1) * self.batch_size))

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        # DataLoader hands batches out round-robin over its workers (batch j from worker
        # j % W), so worker w makes batches w, w + W, ...: the order stays that of j.
        info = get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        j = self.start_batch + worker
        while True:
            yield self.batch(j)
            j += workers


class LMValWindows(Dataset):
    """A fixed set of non-overlapping validation windows spread evenly over `val.npy`.

    Item i is `(x, y)`, int64 tensors of shape `(block_size,)`. There are
    `min(n_windows, (n - 1) // block_size)` windows, so every validation token is scored
    at most once, and the same windows are used at every validation.

    Raises:
        DataError: the file is missing or holds fewer than `block_size + 1` tokens.
    """

    def __init__(self, ids_path: str | Path, block_size: int, n_windows: int,
                 vocab_size: int | None = None) -> None:
        if block_size < 1 or n_windows < 1:
            raise ValueError(f"bad arguments: block_size={block_size}, n_windows={n_windows}")
        self._ids = _Ids(ids_path, vocab_size)
        n = len(self._ids.ids)
        if n < block_size + 1:
            raise DataError(
                f"{ids_path} holds {n} validation tokens, fewer than block_size + 1 = "
                f"{block_size + 1} needed for one validation window; add validation text (a "
                f"larger data.val_fraction, or files in data.val) and run `llmkit prepare`, "
                f"or lower model.block_size"
            )
        self.block_size = block_size
        count = min(n_windows, (n - 1) // block_size)
        last = n - 1 - block_size  # the latest start that still has a target for every x
        # Spacing last / (count - 1) >= block_size because count * block_size <= n - 1.
        self.starts = (np.arange(count) * last // max(count - 1, 1)).astype(np.int64)

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        s = int(self.starts[i])
        row = torch.from_numpy(self._ids.ids[s:s + self.block_size + 1].astype(np.int64))
        return row[:-1], row[1:]
