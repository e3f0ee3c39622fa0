"""Bits per token and perplexity from cross-entropy in nats."""

from __future__ import annotations

import math

import numpy as np
import pytest

from llmkit.metrics.lm import bits_per_token, perplexity


def test_known_values():
    ln2 = math.log(2)
    assert bits_per_token(ln2) == pytest.approx(1.0)
    assert perplexity(ln2) == pytest.approx(2.0)
    assert bits_per_token(0.0) == 0.0
    assert perplexity(0.0) == 1.0
    # A uniform guess over 256 symbols: 8 bits, perplexity 256.
    assert bits_per_token(math.log(256)) == pytest.approx(8.0)
    assert perplexity(math.log(256)) == pytest.approx(256.0)


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
