"""Bits per token, perplexity and bits per byte from cross-entropy in nats."""

from __future__ import annotations

import math

import numpy as np
import pytest

from llmkit.metrics.lm import bits_per_byte, bits_per_token, perplexity


def test_known_values():
    ln2 = math.log(2)
    assert bits_per_token(ln2) == pytest.approx(1.0)
    assert perplexity(ln2) == pytest.approx(2.0)
    assert bits_per_token(0.0) == 0.0
    assert perplexity(0.0) == 1.0
    # A uniform guess over 256 symbols: 8 bits, perplexity 256.
    assert bits_per_token(math.log(256)) == pytest.approx(8.0)
    assert perplexity(math.log(256)) == pytest.approx(256.0)


def test_bits_per_byte():
    # 10 tokens at ln 2 nats each covering 5 bytes: 10 bits over 5 bytes.
    assert bits_per_byte(10 * math.log(2), 5) == pytest.approx(2.0)
    assert bits_per_byte(8 * math.log(2), np.int64(8)) == pytest.approx(1.0)


def test_perplexity_overflow_is_inf_not_an_error():
    assert perplexity(1000.0) == math.inf
    assert perplexity(math.inf) == math.inf


def test_nan_passes_through():
    # A diverged loss must show up in the logs rather than crash the logging path.
    assert math.isnan(perplexity(math.nan))
    assert math.isnan(bits_per_token(math.nan))


def test_accepts_numpy_scalars():
    assert perplexity(np.float32(math.log(2))) == pytest.approx(2.0)


@pytest.mark.parametrize("fn", [bits_per_token, perplexity])
def test_negative_cross_entropy_is_rejected(fn):
    with pytest.raises(ValueError, match=r"mean cross-entropy must be >= 0 nats, got -0.5"):
        fn(-0.5)


@pytest.mark.parametrize("n_bytes", [0, -3, 2.5])
def test_bits_per_byte_needs_positive_byte_count(n_bytes):
    with pytest.raises(ValueError, match="n_bytes must be a positive integer"):
        bits_per_byte(1.0, n_bytes)


def test_bits_per_byte_rejects_negative_total():
    with pytest.raises(ValueError, match="total cross-entropy must be >= 0 nats"):
        bits_per_byte(-1.0, 4)
