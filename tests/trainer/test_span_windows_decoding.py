"""Long texts end to end at the model level: a tiny SpanModel trained on the windows of
examples three times longer than its context answers from the right window, and says
"no span" on a text of that length without an answer.

The data is synthetic so that the answer is learnable in a few seconds: background tokens
4..19, and the answer is the run of marker tokens 20 21 22, put in the LAST window's
part of the text (beyond what the first windows see). Held-out examples are predicted,
so the test checks decoding over windows, not a memorised position.
"""

from __future__ import annotations

import random

import torch

from llmkit.data.spans import SpanExample, collate_spans
from llmkit.data.windows import context_room, default_stride, window_starts
from llmkit.models import GPTConfig, SpanModel, span_loss
from llmkit.span_decode import predict_examples

BLOCK = 32
LENGTH = 3 * BLOCK  # three times the context
MARKER = [20, 21, 22]
N_TRAIN, STEPS, LR = 12, 250, 5e-3


def _example(rng: random.Random, answer: bool, prefix: list[int],
             last_window: bool = True) -> SpanExample:
    ids = [rng.randrange(4, 20) for _ in range(LENGTH)]
    room = context_room(BLOCK, len(prefix))
    starts = window_starts(LENGTH, room, default_stride(room))
    span = None
    if answer:
        # Past the end of the last window but one: only the last window holds it.
        lowest = starts[-2] + room if last_window else 0
        at = rng.randrange(lowest, LENGTH - len(MARKER) + 1)
        ids[at:at + len(MARKER)] = MARKER
        span = (at, at + len(MARKER))
    offsets = [(i, i + 1) for i in range(LENGTH)]  # one character per token
    return SpanExample(prefix_ids=prefix, ids=ids, offsets=offsets, token_span=span,
                       char_span=span, text="x" * LENGTH, source="synthetic", trace={})


def test_long_examples_are_trained_on_and_answered_from_their_last_window():
    torch.manual_seed(0)
    rng = random.Random(0)
    prefix = [5, 6]  # a "question": spans must never be predicted inside it
    # Example 0 has its answer in the last window; the others anywhere (or nowhere), so
    # that the model learns the marker rather than a position.
    train = [_example(rng, answer=True, prefix=prefix)]
    train += [_example(rng, answer=i % 3 != 0, prefix=prefix, last_window=False)
              for i in range(1, N_TRAIN)]
    held_out = [_example(rng, answer=True, prefix=prefix),
                _example(rng, answer=False, prefix=prefix)]
    windows = [w for i, ex in enumerate(train) for w in ex.windows(i, BLOCK, None)]
    assert len(train[0].window_starts(BLOCK, None)) == 7  # room 27, stride 13
    assert len(windows) == N_TRAIN * 7
    # Example 0's answer is the target of exactly one window: its last.
    targets = [w.first for w in windows if w.example == 0 and w.span != (0, 0)]
    assert targets == train[0].window_starts(BLOCK, None)[-1:]

    model = SpanModel(GPTConfig(vocab_size=24, n_layer=2, n_head=2, n_embd=32,
                                block_size=BLOCK, causal=False))
    opt = torch.optim.AdamW(model.parameters(), lr=LR)
    batch = collate_spans(list(enumerate(windows)))
    for _ in range(STEPS):
        start_logits, end_logits = model(batch["ids"], batch["mask"])
        loss = span_loss(start_logits, end_logits, batch["start"], batch["end"], batch["mask"])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()

    answers = predict_examples(model, [train[0], *held_out], block_size=BLOCK, stride=None,
                               max_span_tokens=8, nospan_threshold=0.0, batch_size=4)
    trained, with_answer, without = answers
    for answer, ex in ((trained, train[0]), (with_answer, held_out[0])):
        assert answer.span == ex.char_span
        assert answer.window == len(ex.window_starts(BLOCK, None)) - 1  # the last window
        assert answer.score is not None and answer.score > 0
    assert without.span is None and without.score is not None and without.score < 0
    # Batching does not change the answers.
    one_by_one = predict_examples(model, [train[0], *held_out], block_size=BLOCK, stride=None,
                                  max_span_tokens=8, nospan_threshold=0.0, batch_size=1)
    assert [a.span for a in one_by_one] == [a.span for a in answers]
    for a, b in zip(one_by_one, answers, strict=True):
        assert abs(a.score - b.score) < 1e-4
