"""The hashes the data code shares: stable across runs, machines and Python versions."""

from __future__ import annotations

import hashlib

import numpy as np


def splitmix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser on uint64s: neighbouring inputs get unrelated outputs, and
    `h % n` is uniform (window sampling, the overlap estimate's buckets)."""
    with np.errstate(over="ignore"):  # uint64 arithmetic wraps by design
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def digest64(data: bytes) -> bytes:
    """An 8-byte digest of `data` (blake2b): the split's keyed hash, text identity."""
    return hashlib.blake2b(data, digest_size=8).digest()
