"""The token-id range check that guards every place where ids enter a model.

An id >= vocab_size crashes an embedding deep inside torch ("index 50256 is out of
bounds"), or worse, on some devices reads garbage. llmkit checks first and names the id,
the vocabulary size and where the ids came from. Ids are never clamped.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from llmkit.errors import TokenIdError

_FIX = (
    "re-run `llmkit prepare` with the current tokenizer, or check that the model was built "
    "from the same tokenizer as the ids"
)


def check_token_ids(ids: Any, vocab_size: int, source: str) -> None:
    """Raise TokenIdError unless every id in `ids` lies in `[0, vocab_size)`.

    Args:
        ids: a list (flat or rectangular), numpy array (any integer dtype, memmaps
            included) or torch tensor (any device). Empty input passes.
        vocab_size: the number of rows of the model's embedding (the tokenizer's real size).
        source: where the ids came from, for the message: a file, "prompt 'Hello'", a
            checkpoint path.

    Raises:
        TokenIdError: an id is out of range, or the ids are not integers. The message names
            the offending id, how many ids are out of range and the first position.
    """
    if vocab_size <= 0:
        raise ValueError(f"vocab_size must be positive, got {vocab_size}")
    if hasattr(ids, "numel"):  # a torch tensor; torch itself is never imported here
        if ids.numel() == 0:
            return
        dtype = str(ids.dtype)
        if not dtype.startswith(("torch.int", "torch.uint")):
            raise _not_integers(source, dtype)
        # Unsigned dtypes cannot hold negatives; skipping min() saves a pass over the data.
        lo = 0 if dtype.startswith("torch.uint") else int(ids.min())
        hi = int(ids.max())
    else:
        ids = np.asarray(ids)
        if ids.size == 0:
            return
        if ids.dtype.kind not in "iu":
            raise _not_integers(source, str(ids.dtype))
        lo = 0 if ids.dtype.kind == "u" else int(ids.min())
        hi = int(ids.max())
    if lo >= 0 and hi < vocab_size:
        return
    raise _out_of_range(ids, lo, hi, vocab_size, source)


def _not_integers(source: str, dtype: str) -> TokenIdError:
    return TokenIdError(
        f"token ids from {source} have dtype {dtype}; token ids must have an integer dtype"
    )


def _out_of_range(ids: Any, lo: int, hi: int, vocab_size: int, source: str) -> TokenIdError:
    # Only reached on failure, so the extra passes and the copy off the device are fine.
    if hasattr(ids, "numel"):
        ids = ids.detach().cpu().numpy()
    bad = (ids < 0) | (ids >= vocab_size)
    first = tuple(int(i) for i in np.unravel_index(int(np.argmax(bad)), bad.shape))
    where = first[0] if len(first) == 1 else list(first)
    offending = hi if hi >= vocab_size else lo
    return TokenIdError(
        f"token id {offending} from {source} is out of range for a vocabulary of {vocab_size} "
        f"tokens ({int(bad.sum())} of {bad.size} ids out of range, first at position {where}); "
        f"ids must be in [0, {vocab_size}); {_FIX}"
    )
