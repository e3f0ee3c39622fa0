from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmkit.tokenizer import (
    Tokenizer,
    char_span_to_token_span,
    token_span_to_char_span,
    train_tokenizer,
)

CORPUS = (
    "Hello world, the world is big.\n"
    "café naïve e\u0301cole 中文字符 🙂🙂 done!🙂\n"
    "  leading spaces and  double  spaces  \n"
    "\ttabs\tand\r\nwindows lines\n"
) * 8
# Characters the texts are drawn from: multi-byte, combining, emoji, every kind of space;
# "Q" and "🚀" are not in the corpus (unknown for char, split into bytes for bpe).
ALPHABET = "ab lo wéä中文🙂🚀!,\u0301\n\t\r Q"

# Offsets of a model sequence "[BOS] hello world [EOS]" as bpe gives them for "hello world".
SEQ = [(0, 0), (0, 5), (6, 11), (11, 11)]
# The tokenizer fixture is module-scoped (trained once), so reusing it across examples is fine.
_SETTINGS = settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(scope="module", params=["bpe", "char"])
def tok(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Tokenizer:
    folder = tmp_path_factory.mktemp(request.param)
    corpus = folder / "corpus.txt"
    corpus.write_text(CORPUS, encoding="utf-8", newline="")
    return train_tokenizer(
        [corpus],
        folder / "tokenizer.json",
        kind=request.param,
        vocab_size=400,
        show_progress=False,
    )


def test_bos_and_eos_positions_are_never_part_of_a_span() -> None:
    assert char_span_to_token_span(SEQ, 0, 5) == (1, 2)  # not (0, 2): BOS covers nothing
    assert char_span_to_token_span(SEQ, 6, 11) == (2, 3)  # not (2, 4): nor does EOS
    assert char_span_to_token_span(SEQ, 0, 11) == (1, 3)
    assert token_span_to_char_span(SEQ, 1, 3) == (0, 11)
    assert token_span_to_char_span(SEQ, 0, 4) == (0, 11)


def test_partial_tokens_are_taken_whole() -> None:
    assert char_span_to_token_span(SEQ, 7, 9) == (2, 3)
    assert token_span_to_char_span(SEQ, 2, 3) == (6, 11)


def test_spans_that_cannot_convert_are_none_not_changed() -> None:
    assert char_span_to_token_span(SEQ, 5, 11) is None  # starts on the space before "world"
    assert char_span_to_token_span(SEQ, 5, 6) is None  # only that space
    assert char_span_to_token_span(SEQ, 3, 3) is None  # empty
    assert char_span_to_token_span(SEQ, 11, 14) is None  # past the text (truncated)
    assert char_span_to_token_span(SEQ, 8, 14) is None  # ends past the text


def test_bad_arguments_are_caller_bugs() -> None:
    with pytest.raises(ValueError, match="not a span"):
        char_span_to_token_span(SEQ, -1, 3)
    with pytest.raises(ValueError, match="not a span"):
        char_span_to_token_span(SEQ, 4, 3)
    for ts, te in [(0, 0), (2, 1), (3, 5), (-1, 2)]:
        with pytest.raises(ValueError, match="4 positions"):
            token_span_to_char_span(SEQ, ts, te)


def test_positions_that_cover_nothing_give_an_empty_char_span() -> None:
    assert token_span_to_char_span(SEQ, 3, 4) == (11, 11)


def test_offsets_read_back_from_json_work() -> None:
    assert char_span_to_token_span([[0, 0], [0, 5], [6, 11], [11, 11]], 6, 11) == (2, 3)


def test_bpe_offsets_trim_the_space_before_a_word(tok: Tokenizer) -> None:
    _, offsets = tok.encode_offsets("hello world")
    if tok.kind == "char":
        assert offsets == [(i, i + 1) for i in range(11)]
        return
    text = "hello world"
    assert [text[s:e] for s, e in offsets][-1] == "world"
    span = char_span_to_token_span(offsets, 6, 11)
    assert span is not None and token_span_to_char_span(offsets, *span) == (6, 11)


def _covered(offsets: list[tuple[int, int]], i: int) -> bool:
    return any(s <= i < e for s, e in offsets)


def _boundary(offsets: list[tuple[int, int]], i: int) -> bool:
    """True when no token straddles position i (the bytes of one character may share it)."""
    return not any(s < i < e for s, e in offsets)


@_SETTINGS
@given(data=st.data(), text=st.text(alphabet=ALPHABET, min_size=1, max_size=30))
def test_spans_round_trip_to_a_containing_span(
    tok: Tokenizer, text: str, data: st.DataObject
) -> None:
    _, offsets = tok.encode_offsets(text)
    # Only spaces may belong to no token (bpe trims them off "Ġword"); char covers all.
    uncovered = [text[i] for i in range(len(text)) if not _covered(offsets, i)]
    assert set(uncovered) <= ({" "} if tok.kind == "bpe" else set())
    start = data.draw(st.integers(0, len(text) - 1), label="start")
    end = data.draw(st.integers(start + 1, len(text)), label="end")
    # The model sequence adds BOS and EOS with empty offsets; positions need no shifting.
    seq = [(0, 0), *offsets, (len(text), len(text))]
    span = char_span_to_token_span(seq, start, end)
    convertible = _covered(offsets, start) and _covered(offsets, end - 1)
    assert (span is not None) == convertible
    if span is None:
        return
    ts, te = span
    assert 1 <= ts < te <= len(seq) - 1
    cs, ce = token_span_to_char_span(seq, ts, te)
    assert cs <= start and end <= ce  # contains the original, never shrinks it
    # Smallest: the first and last tokens overlap the span.
    for s, e in (seq[ts], seq[te - 1]):
        assert s < end and e > start
    if _boundary(offsets, start) and _boundary(offsets, end):
        assert (cs, ce) == (start, end)


@_SETTINGS
@given(data=st.data(), text=st.text(alphabet=ALPHABET, min_size=1, max_size=30))
def test_token_boundaries_round_trip_exactly(
    tok: Tokenizer, text: str, data: st.DataObject
) -> None:
    _, offsets = tok.encode_offsets(text)
    real = [p for p, (s, e) in enumerate(offsets) if s < e]
    if not real:
        return
    # Spans on the first and last tokens are drawn as often as any other.
    p = data.draw(st.sampled_from(real), label="first token")
    q = data.draw(st.sampled_from([r for r in real if r >= p]), label="last token")
    start, end = offsets[p][0], offsets[q][1]
    if not (_boundary(offsets, start) and _boundary(offsets, end)):
        return  # a token shares a character with its neighbour: not a boundary
    span = char_span_to_token_span(offsets, start, end)
    assert span is not None
    assert token_span_to_char_span(offsets, *span) == (start, end)
