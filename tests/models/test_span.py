"""Tests of the span model, its loss and its decoder."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.nn import functional as F

from llmkit.models import GPTConfig, SpanModel, decode_spans, span_loss


def tiny(**kw) -> GPTConfig:
    base = dict(vocab_size=40, n_layer=2, n_head=2, n_embd=16, block_size=16, causal=False)
    base.update(kw)
    return GPTConfig(**base)


def prefix_mask(lengths: list[int], T: int) -> torch.Tensor:
    """(B, T) bool mask with the first lengths[b] positions real."""
    return torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]


def masked_logits(B: int, T: int, mask: torch.Tensor, seed: int, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    start = torch.randn(B, T, generator=g).to(dtype)
    end = torch.randn(B, T, generator=g).to(dtype)
    lowest = torch.finfo(dtype).min
    return start.masked_fill(~mask, lowest), end.masked_fill(~mask, lowest)


# --- model ----------------------------------------------------------------------------


def test_span_model_shapes_and_padding_at_dtype_min():
    cfg = tiny()
    model = SpanModel(cfg).eval()
    ids = torch.randint(0, 40, (2, 10))
    mask = prefix_mask([10, 6], 10)
    start, end = model(ids, mask)
    assert start.shape == end.shape == (2, 10)
    assert (start[1, 6:] == torch.finfo(torch.float32).min).all()
    assert (end[1, 6:] == torch.finfo(torch.float32).min).all()
    assert torch.isfinite(start).all() and torch.isfinite(end).all()
    # the real positions of the padded example match the same example unpadded
    s1, e1 = model(ids[1:, :6], mask[1:, :6])
    torch.testing.assert_close(start[1:, :6], s1, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(end[1:, :6], e1, atol=1e-5, rtol=1e-5)


def test_span_model_padding_is_the_bf16_min_in_bf16():
    model = SpanModel(tiny()).to(torch.bfloat16).eval()
    ids = torch.randint(0, 40, (2, 8))
    mask = prefix_mask([8, 5], 8)
    start, end = model(ids, mask)
    assert start.dtype == torch.bfloat16
    assert (start[1, 5:] == torch.finfo(torch.bfloat16).min).all()
    assert torch.isfinite(start).all() and torch.isfinite(end).all()


def test_span_model_sees_tokens_after_each_position():
    model = SpanModel(tiny()).eval()
    ids = torch.randint(0, 40, (1, 8))
    ids2 = ids.clone()
    ids2[0, 7] = (ids[0, 7] + 1) % 40
    mask = torch.ones(1, 8, dtype=torch.bool)
    assert not torch.allclose(model(ids, mask)[0][:, 0], model(ids2, mask)[0][:, 0])


def test_span_model_refuses_a_causal_trunk():
    with pytest.raises(ValueError, match="causal=False"):
        SpanModel(tiny(causal=True))


# --- loss -----------------------------------------------------------------------------


def reference_loss(start_logits, end_logits, start, end, mask, eps):
    """Smoothed cross-entropy written out example by example, over real positions only."""
    total = 0.0
    B = start_logits.size(0)
    for b in range(B):
        real = [t for t in range(mask.size(1)) if mask[b, t]]
        for logits, gold in ((start_logits[b], start[b]), (end_logits[b], max(end[b] - 1, 0))):
            logp = F.log_softmax(logits[real].double(), dim=0)
            target = torch.full((len(real),), eps / len(real), dtype=torch.double)
            target[real.index(int(gold))] += 1 - eps
            total += -(target * logp).sum().item() / 2
    return total / B


def test_span_loss_without_smoothing_is_cross_entropy():
    mask = prefix_mask([9, 6, 4], 9)
    s, e = masked_logits(3, 9, mask, seed=0)
    start = torch.tensor([2, 0, 1])
    end = torch.tensor([5, 0, 3])  # exclusive: the end head points at 4, 0 (BOS), 2
    loss = span_loss(s, e, start, end, mask)
    expected = (F.cross_entropy(s, start) + F.cross_entropy(e, torch.tensor([4, 0, 2]))) / 2
    torch.testing.assert_close(loss, expected)
    assert loss.item() == pytest.approx(reference_loss(s, e, start, end, mask, 0.0), rel=1e-5)


@pytest.mark.parametrize("eps", [0.05, 0.3])
def test_span_loss_smoothing_matches_the_reference(eps):
    mask = prefix_mask([9, 6, 4], 9)
    s, e = masked_logits(3, 9, mask, seed=1)
    start, end = torch.tensor([2, 0, 1]), torch.tensor([5, 0, 3])
    loss = span_loss(s, e, start, end, mask, label_smoothing=eps)
    assert loss.item() == pytest.approx(reference_loss(s, e, start, end, mask, eps), rel=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_span_loss_does_not_change_with_extra_padding(dtype):
    mask = prefix_mask([6, 4], 6)
    s, e = masked_logits(2, 6, mask, seed=2, dtype=dtype)
    start, end = torch.tensor([1, 0]), torch.tensor([3, 0])
    lowest = torch.finfo(dtype).min
    s_pad = F.pad(s, (0, 5), value=lowest)
    e_pad = F.pad(e, (0, 5), value=lowest)
    mask_pad = F.pad(mask, (0, 5), value=False)
    for eps in (0.0, 0.1):
        a = span_loss(s, e, start, end, mask, label_smoothing=eps)
        b = span_loss(s_pad, e_pad, start, end, mask_pad, label_smoothing=eps)
        assert torch.isfinite(b)
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_span_loss_and_gradients_are_finite_with_min_logits(dtype):
    mask = prefix_mask([7, 3], 7)
    s, e = masked_logits(2, 7, mask, seed=3, dtype=dtype)
    s = (s * 1).requires_grad_(True)  # a leaf holding finfo.min at padding
    e = (e * 1).requires_grad_(True)
    loss = span_loss(s, e, torch.tensor([2, 0]), torch.tensor([4, 0]), mask, label_smoothing=0.1)
    loss.backward()
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert torch.isfinite(s.grad).all() and torch.isfinite(e.grad).all()
    assert (s.grad[1, 3:] == 0).all()  # padding receives no gradient


def test_span_model_trains_in_bf16_without_nan():
    model = SpanModel(tiny()).to(torch.bfloat16)
    ids = torch.randint(0, 40, (2, 8))
    mask = prefix_mask([8, 5], 8)
    s, e = model(ids, mask)
    loss = span_loss(s, e, torch.tensor([1, 0]), torch.tensor([3, 0]), mask, label_smoothing=0.1)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_loss_targets_and_decoder_agree_on_the_exclusive_end():
    # Logits that put all their mass on what span_loss asks for decode to the gold span.
    mask = prefix_mask([8, 8], 8)
    start, end = torch.tensor([2, 0]), torch.tensor([5, 0])  # span [2, 5) and no span
    s = torch.full((2, 8), -20.0)
    e = torch.full((2, 8), -20.0)
    s[0, 2] = e[0, 4] = 20.0
    s[1, 0] = e[1, 0] = 20.0
    assert span_loss(s, e, start, end, mask).item() < 1e-6
    starts, ends, _ = decode_spans(s, e, mask, max_span_tokens=8)
    assert starts.tolist() == [2, 0] and ends.tolist() == [5, 0]


# --- decoder --------------------------------------------------------------------------


def brute_force_decode(s, e, mask, max_span_tokens, threshold):
    """The definition of decode_spans as nested loops (float32 sums, like the real one)."""
    starts, ends, scores = [], [], []
    for b in range(s.size(0)):
        real = [t for t in range(s.size(1)) if mask[b, t]]
        inner = [t for t in real if t != 0 and t != real[-1]]  # no BOS, no EOS
        best, best_ij = -math.inf, None
        for i in inner:
            for j in inner:
                if i <= j < i + max_span_tokens:
                    score = (s[b, i] + e[b, j]).item()
                    if score > best:
                        best, best_ij = score, (i, j)
        score = best - (s[b, 0] + e[b, 0]).item() if best_ij else -math.inf
        if best_ij and score > threshold:
            starts.append(best_ij[0])
            ends.append(best_ij[1] + 1)
        else:
            starts.append(0)
            ends.append(0)
        scores.append(score)
    return starts, ends, scores


@settings(max_examples=60, deadline=None)
@given(
    lengths=st.lists(st.integers(min_value=1, max_value=10), min_size=1, max_size=4),
    extra_pad=st.integers(min_value=0, max_value=3),
    max_span_tokens=st.integers(min_value=1, max_value=12),
    threshold=st.sampled_from([-2.0, 0.0, 0.5, 3.0]),
    seed=st.integers(min_value=0, max_value=10_000),
)
def test_decode_spans_matches_brute_force(lengths, extra_pad, max_span_tokens, threshold, seed):
    T = max(lengths) + extra_pad
    mask = prefix_mask(lengths, T)
    s, e = masked_logits(len(lengths), T, mask, seed=seed)
    starts, ends, scores = decode_spans(s, e, mask, max_span_tokens, threshold)
    want_s, want_e, want_scores = brute_force_decode(s, e, mask, max_span_tokens, threshold)
    assert starts.tolist() == want_s
    assert ends.tolist() == want_e
    for got, want in zip(scores.tolist(), want_scores, strict=True):
        assert got == pytest.approx(want, rel=1e-6, abs=1e-6)


def test_decode_spans_with_one_token_spans():
    mask = prefix_mask([9, 9, 9], 9)
    s, e = masked_logits(3, 9, mask, seed=5)
    starts, ends, _ = decode_spans(s, e, mask, max_span_tokens=1, nospan_threshold=-1e9)
    assert ((ends - starts) == 1).all()
    assert (starts >= 1).all() and (ends <= 8).all()  # never BOS, never EOS at 8


def test_decode_spans_threshold_decides_between_span_and_nospan():
    mask = prefix_mask([6], 6)
    s = torch.tensor([[1.0, 0.0, 3.0, 0.0, 0.0, 9.0]])  # 9.0 on EOS must be ignored
    e = torch.tensor([[1.0, 0.0, 0.0, 2.0, 0.0, 9.0]])
    # best span: start 2, end 3 -> score 5; no span: 2; margin 3
    starts, ends, scores = decode_spans(s, e, mask, max_span_tokens=4)
    assert (starts.item(), ends.item()) == (2, 4)
    assert scores.item() == pytest.approx(3.0)
    assert decode_spans(s, e, mask, 4, nospan_threshold=2.9)[1].item() == 4
    assert decode_spans(s, e, mask, 4, nospan_threshold=3.0)[1].item() == 0  # strictly more
    # too short to reach the end at 3: the best 1-token span is (2, 3) with 3 + 0 = 3
    starts, ends, scores = decode_spans(s, e, mask, max_span_tokens=1)
    assert (starts.item(), ends.item(), scores.item()) == (2, 3, pytest.approx(1.0))


def test_decode_spans_without_room_for_a_span_says_nospan():
    mask = prefix_mask([2, 1, 5], 5)  # BOS+EOS only; BOS only; a real example
    s, e = masked_logits(3, 5, mask, seed=6)
    starts, ends, scores = decode_spans(s, e, mask, max_span_tokens=3, nospan_threshold=-1e9)
    assert starts[:2].tolist() == [0, 0] and ends[:2].tolist() == [0, 0]
    assert scores[0].item() == -math.inf and scores[1].item() == -math.inf
    assert 1 <= starts[2].item() < ends[2].item() <= 4


def test_decode_spans_accepts_bf16_and_rejects_bad_max_span():
    mask = prefix_mask([7, 4], 7)
    s, e = masked_logits(2, 7, mask, seed=7, dtype=torch.bfloat16)
    starts, ends, scores = decode_spans(s, e, mask, max_span_tokens=3)
    assert scores.dtype == torch.float32
    want = brute_force_decode(s.float(), e.float(), mask, 3, 0.0)
    assert (starts.tolist(), ends.tolist()) == want[:2]
    with pytest.raises(ValueError, match="max_span_tokens"):
        decode_spans(s, e, mask, max_span_tokens=0)


@settings(max_examples=40, deadline=None)
@given(
    prefix=st.integers(min_value=1, max_value=4),
    context=st.integers(min_value=1, max_value=8),
    max_span_tokens=st.integers(min_value=1, max_value=12),
    seed=st.integers(min_value=0, max_value=10_000),
)
def test_decode_spans_never_leaves_the_context(prefix, context, max_span_tokens, seed):
    # [BOS] prefix [EOS] context [EOS], with the prefix's logits made the highest of all:
    # an unmasked decoder would pick them; the context mask keeps the span inside.
    T = 1 + prefix + 1 + context + 1
    mask = prefix_mask([T], T)
    lo, hi = prefix + 2, prefix + 2 + context
    ctx = torch.zeros((1, T), dtype=torch.bool)
    ctx[0, lo:hi] = True
    s, e = masked_logits(1, T, mask, seed=seed)
    s[0, 1:lo] += 100.0
    e[0, 1:lo] += 100.0
    starts, ends, scores = decode_spans(s, e, mask, max_span_tokens, -math.inf, context=ctx)
    assert lo <= starts.item() < ends.item() <= hi
    # The same as the brute force over the context positions alone.
    best = max(((s[0, i] + e[0, j]).item(), i, j) for i in range(lo, hi) for j in range(lo, hi)
               if i <= j < i + max_span_tokens)
    assert (starts.item(), ends.item()) == (best[1], best[2] + 1)
    assert scores.item() == pytest.approx(best[0] - (s[0, 0] + e[0, 0]).item(), rel=1e-6)
