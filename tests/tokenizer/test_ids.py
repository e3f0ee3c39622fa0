from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from llmkit.errors import LlmkitError, TokenIdError
from llmkit.tokenizer import check_token_ids


@pytest.mark.parametrize(
    "ids",
    [[], [0, 1, 767], np.array([], dtype=np.int64), np.array([[0, 5], [767, 2]], dtype=np.int32)],
)
def test_in_range_and_empty_pass(ids: object) -> None:
    check_token_ids(ids, 768, "test")


def test_too_large_id_names_id_size_source_and_fix() -> None:
    with pytest.raises(TokenIdError) as info:
        check_token_ids([5, 50256, 7], 768, "prompt 'Hello'")
    msg = str(info.value)
    assert "50256" in msg and "768" in msg and "prompt 'Hello'" in msg
    assert "[0, 768)" in msg and "llmkit prepare" in msg
    assert "first at position 1" in msg
    assert isinstance(info.value, LlmkitError)  # so the CLI prints one line, no traceback


def test_negative_id_is_named() -> None:
    with pytest.raises(TokenIdError, match=r"token id -1 from data/train.npy"):
        check_token_ids(np.array([3, -1, 4], dtype=np.int16), 10, "data/train.npy")


def test_exact_vocab_size_is_out_of_range() -> None:
    check_token_ids([9], 10, "x")
    with pytest.raises(TokenIdError, match="token id 10 "):
        check_token_ids([10], 10, "x")


def test_uint16_memmap(tmp_path: Path) -> None:
    path = tmp_path / "train.npy"
    np.save(path, np.array([1, 2, 65535], dtype=np.uint16))
    ids = np.load(path, mmap_mode="r")
    check_token_ids(ids, 65536, str(path))
    with pytest.raises(TokenIdError, match=r"65535 .*train.npy.*\[0, 423\)"):
        check_token_ids(ids, 423, str(path))


def test_2d_position_is_row_and_column() -> None:
    ids = np.zeros((3, 4), dtype=np.int64)
    ids[2, 1] = 99
    with pytest.raises(TokenIdError, match=r"1 of 12 ids out of range, first at position \[2, 1\]"):
        check_token_ids(ids, 50, "batch")


def test_float_ids_are_refused() -> None:
    with pytest.raises(TokenIdError, match="float32"):
        check_token_ids(np.array([1.0, 2.0], dtype=np.float32), 10, "x")


def test_torch_tensors() -> None:
    torch = pytest.importorskip("torch")
    check_token_ids(torch.tensor([[0, 9]]), 10, "batch")
    check_token_ids(torch.empty(0, dtype=torch.long), 10, "batch")
    check_token_ids(torch.tensor([255], dtype=torch.uint8), 256, "batch")
    with pytest.raises(TokenIdError, match=r"token id 12 from checkpoint .*\[0, 10\)"):
        check_token_ids(torch.tensor([[0, 12], [3, 11]]), 10, "checkpoint last.ckpt")
    with pytest.raises(TokenIdError, match="token id -3"):
        check_token_ids(torch.tensor([-3, 1]), 10, "batch")
    with pytest.raises(TokenIdError, match=r"torch\.float32"):
        check_token_ids(torch.tensor([1.0]), 10, "batch")
