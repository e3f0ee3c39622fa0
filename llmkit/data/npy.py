"""1-D `.npy` token-id files: written in pieces of unknown total length, read in slices."""

from __future__ import annotations

import io
from pathlib import Path
from typing import BinaryIO

import numpy as np


class NpyWriter:
    """A 1-D .npy file whose length is known only when the last ids have been appended.

    The header is written last, over a placeholder of the same size: numpy pads the shape
    field of a header so that its size does not depend on the length.
    """

    def __init__(self, fh: BinaryIO, dtype: np.dtype) -> None:
        self._fh, self.dtype, self.n = fh, dtype, 0
        self._header_len = len(self._header(0))
        self.reset()

    def _header(self, n: int) -> bytes:
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


class NpyFile:
    """A 1-D .npy file read slice by slice with plain file reads.

    Unlike a memmap, the pages read do not stay mapped into the process, so reading a
    file of many GB leaves the resident memory where it was. Supports `len()` and
    `[lo:hi]`, which is all the functions below use.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        with open(self.path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                    else np.lib.format.read_array_header_2_0)
            shape, _, self.dtype = read(fh)
            self.offset = fh.tell()  # where the ids start
        if len(shape) != 1:
            raise ValueError(f"{self.path} holds an array of shape {shape}, not a 1-D one")
        self._n = shape[0]

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, index: slice) -> np.ndarray:
        lo, hi, step = index.indices(self._n)
        if step != 1:
            raise IndexError("NpyFile supports only contiguous slices")
        with open(self.path, "rb") as fh:
            fh.seek(self.offset + lo * self.dtype.itemsize)
            return np.fromfile(fh, dtype=self.dtype, count=max(hi - lo, 0))


def token_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned dtype that holds every id of a vocabulary of this size."""
    return np.dtype(np.uint16 if vocab_size <= 1 << 16 else np.uint32)
