"""The numbers every inspection report is made of, checked by hand."""

from __future__ import annotations

import math

import pytest
import torch

from llmkit.inspect.numerics import (
    NonFinite,
    cosine,
    entropy_bits,
    finite_or_none,
    kl_bits,
    l2,
    log_probs,
    token_rank,
)


def test_entropy_of_a_half_and_two_quarters_is_one_and_a_half_bits():
    logp = torch.tensor([0.5, 0.25, 0.25]).log()
    assert entropy_bits(logp).item() == pytest.approx(1.5, abs=1e-6)


@pytest.mark.parametrize("V", [2, 7, 300])
def test_entropy_of_uniform_logits_is_log2_v(V):
    assert entropy_bits(log_probs(torch.zeros(V))).item() == pytest.approx(math.log2(V),
                                                                           abs=1e-5)


def test_minus_inf_logits_stay_finite_and_count_as_zero_probability():
    logits = torch.tensor([0.0, 0.0, float("-inf"), float("-inf")])
    logp = log_probs(logits)
    assert entropy_bits(logp).item() == pytest.approx(1.0, abs=1e-6)
    assert kl_bits(logp, logp).item() == 0.0
    # a token the layer rules out but the model does not: KL is infinite, not hidden
    q = log_probs(torch.tensor([0.0, float("-inf"), 0.0, 0.0]))
    assert kl_bits(logp, q).item() == math.inf


def test_nan_logits_give_nan_never_zero_bits():
    logp = log_probs(torch.tensor([float("nan"), 1.0, 2.0]))
    assert math.isnan(entropy_bits(logp).item())
    ok = log_probs(torch.tensor([0.0, 1.0, 2.0]))
    assert math.isnan(kl_bits(ok, logp).item())
    assert math.isnan(kl_bits(logp, ok).item())
    # a whole row of NaN too (where(p > 0) would have made this 0 bits)
    assert math.isnan(entropy_bits(log_probs(torch.full((4,), float("nan")))).item())


def test_kl_by_hand_and_zero_for_identical_inputs():
    p = torch.tensor([0.5, 0.5]).log()
    q = torch.tensor([0.25, 0.75]).log()
    expected = 0.5 * math.log2(0.5 / 0.25) + 0.5 * math.log2(0.5 / 0.75)
    assert kl_bits(p, q).item() == pytest.approx(expected, abs=1e-6)
    x = log_probs(torch.randn(3, 5, 11))
    assert torch.equal(kl_bits(x, x), torch.zeros(3, 5))


def test_bf16_logits_are_reduced_in_float32():
    logits = torch.randn(4, 50).to(torch.bfloat16)
    assert log_probs(logits).dtype == torch.float32
    assert entropy_bits(log_probs(logits)).dtype == torch.float32


def test_token_rank_counts_strictly_better_tokens_and_nan_has_no_rank():
    logits = torch.tensor([[1.0, 3.0, 2.0, 3.0]])
    assert token_rank(logits, torch.tensor([1])).item() == 0  # tie with id 3: still top
    assert token_rank(logits, torch.tensor([2])).item() == 2
    assert token_rank(logits, torch.tensor([0])).item() == 3
    broken = torch.tensor([[1.0, float("nan"), 2.0]])
    assert math.isnan(token_rank(broken, torch.tensor([2])).item())


def test_cosine_and_l2_in_float32():
    a = torch.tensor([1.0, 0.0]).to(torch.bfloat16)
    b = torch.tensor([0.0, 2.0])
    assert cosine(a, b).item() == 0.0 and cosine(a, b).dtype == torch.float32
    assert cosine(b, 3 * b).item() == pytest.approx(1.0)
    assert l2(a, b).item() == pytest.approx(math.sqrt(5.0))
    assert math.isnan(cosine(torch.zeros(2), b).item())  # undefined, not 0


def test_finite_or_none_records_every_bad_value_with_its_place():
    nf = NonFinite()
    assert finite_or_none(torch.tensor(2.5), "a", nf) == 2.5
    assert finite_or_none(float("nan"), "b", nf) is None
    values = finite_or_none(torch.tensor([[1.0, float("inf")], [float("-inf"), 0.0]]), "c",
                            nf)
    assert values == [[1.0, None], [None, 0.0]]
    assert nf.entries == [{"where": "b", "value": "nan"}, {"where": "c[0][1]", "value": "inf"},
                          {"where": "c[1][0]", "value": "-inf"}]
    assert finite_or_none(torch.tensor([3, 4]), "ints", nf) == [3, 4]
    assert len(nf) == 3
