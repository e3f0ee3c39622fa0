"""The llmkit tokenizer: a thin wrapper over a HuggingFace `tokenizers` tokenizer.json.

Every llmkit tokenizer has the same fixed special ids, so that data, models and checkpoints
never have to look them up: PAD_ID = 0, BOS_ID = 1, EOS_ID = 2, and for the char kind
UNK_ID = 3 (the token for characters not seen in training; byte-level BPE has no unknowns).

`encode` never adds special tokens, and text that happens to contain a special token's
string (say "<eos>") is encoded as ordinary text: special ids only enter a sequence when
the data code puts them there.

The kind is derived from the saved file itself (a BPE model is "bpe", a WordLevel model is
"char"), so there is no sidecar file that could drift from the tokenizer.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer as HFTokenizer

from llmkit.errors import TokenizerError
from llmkit.tokenizer.ids import check_token_ids

PAD_ID = 0
BOS_ID = 1
EOS_ID = 2
UNK_ID = 3  # char kind only
UNK_TOKEN = "<unk>"  # char kind only; shown as U+FFFD by `decode`
# Ids that exist whatever the data holds: pad, bos, eos, and unk for the char kind.
SPECIAL_IDS = {"bpe": 3, "char": 4}
# Byte-level BPE starts from one token per byte plus the specials.
MIN_BPE_VOCAB = SPECIAL_IDS["bpe"] + 256

KINDS = ("bpe", "char")
# tokenizers' model type -> llmkit kind; the inverse is how train.py builds each kind.
_KIND_OF_MODEL = {"BPE": "bpe", "WordLevel": "char"}

_RETRAIN = "run `llmkit tokenizer` to train it again"


class Tokenizer:
    """A trained llmkit tokenizer loaded from its tokenizer.json.

    Attributes:
        path: the tokenizer.json it was loaded from.
        kind: "bpe" (byte-level BPE) or "char" (one token per character).
        vocab_size: the real number of token ids, specials included; ids are 0..vocab_size-1.
        pad_id, bos_id, eos_id: always 0, 1, 2.
        unk_id: 3 for the char kind, None for bpe (every text encodes without unknowns).
        pad_token, bos_token, eos_token: the special tokens' strings as saved.
        hash: sha256 hex digest of the tokenizer.json bytes (what prepared caches record).

    Offsets (`encode_offsets`) are character offsets `[start, end)` into the Python str.
    For bpe, a token's leading spaces are trimmed from its offsets: in "hello world" the
    token "Ġworld" has offsets (6, 11), so the spaces between words belong to no token and
    a token that is only spaces has an empty offset (end, end). Newlines and tabs are not
    trimmed. The bytes of one multi-byte character may be split over several tokens; each
    of them then carries the whole character's offsets. For char, token i is character i.
    """

    pad_id = PAD_ID
    bos_id = BOS_ID
    eos_id = EOS_ID

    def __init__(self, hf: HFTokenizer, *, path: Path, file_hash: str) -> None:
        """Wrap an already checked tokenizer; use `Tokenizer.load` or `train_tokenizer`."""
        self._tok = hf
        # Not saved in tokenizer.json, so set on every construction: without it a literal
        # "<eos>" in the data would encode as the EOS id.
        self._tok.encode_special_tokens = True
        self.path = path
        self.hash = file_hash
        self.kind = _kind_of(hf, path)
        self.vocab_size = hf.get_vocab_size(with_added_tokens=True)
        specials = _check_specials(hf, path)
        self.pad_token, self.bos_token, self.eos_token = specials
        self.unk_id = UNK_ID if self.kind == "char" else None
        _check_vocab(hf, path, self.kind, self.vocab_size)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Tokenizer:
        """Load a tokenizer.json written by `train_tokenizer`.

        Raises:
            TokenizerError: the file is missing, unreadable, corrupt, or not an llmkit
                tokenizer (special ids not 0/1/2); the message names the path and the fix.
        """
        path = Path(path)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise TokenizerError(f"tokenizer file {path} does not exist; {_RETRAIN}") from None
        except OSError as e:
            raise TokenizerError(
                f"cannot read tokenizer file {path} ({e.strerror}); {_RETRAIN}"
            ) from None
        # Hash and parse the same bytes, so the hash always describes what was loaded.
        try:
            hf = HFTokenizer.from_str(data.decode("utf-8"))
        except Exception as e:  # tokenizers raises a bare Exception for bad JSON
            raise TokenizerError(
                f"tokenizer file {path} is not a valid tokenizer.json ({_short(e)}); {_RETRAIN}"
            ) from None
        return cls(hf, path=path, file_hash=hashlib.sha256(data).hexdigest())

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`, without BOS/EOS."""
        return self._tok.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of many texts at once (parallel Rust encoder, no offsets computed)."""
        encodings = self._tok.encode_batch_fast(list(texts), add_special_tokens=False)
        return [e.ids for e in encodings]

    def encode_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        """Token ids of `text` and, for each, its character offsets `[start, end)` in `text`."""
        e = self._tok.encode(text, add_special_tokens=False)
        return e.ids, e.offsets

    def encode_offsets_batch(
        self, texts: Sequence[str]
    ) -> list[tuple[list[int], list[tuple[int, int]]]]:
        """`encode_offsets` for many texts at once (parallel Rust encoder)."""
        encodings = self._tok.encode_batch(list(texts), add_special_tokens=False)
        return [(e.ids, e.offsets) for e in encodings]

    def decode(self, ids: Sequence[int] | Any) -> str:
        """Text of `ids` (a list, numpy array or 1-D tensor), special tokens left out.

        Raises:
            TokenIdError: an id is outside the vocabulary (the Rust decoder would silently
                drop it).
        """
        check_token_ids(ids, self.vocab_size, "the ids given to Tokenizer.decode")
        ids = ids.tolist() if hasattr(ids, "tolist") else [int(i) for i in ids]
        return self._tok.decode(ids, skip_special_tokens=True)

    def token_text(self, i: int) -> str:
        """One token as inspection tools show it: its own text, a special by its name
        (`decode` leaves specials out, which would make them vanish from a table)."""
        specials = {PAD_ID: self.pad_token, BOS_ID: self.bos_token, EOS_ID: self.eos_token}
        return specials[i] if i in specials else self.decode([i])

    def __repr__(self) -> str:
        return f"Tokenizer(kind={self.kind!r}, vocab_size={self.vocab_size}, path='{self.path}')"

    def __setstate__(self, state: dict[str, Any]) -> None:
        # DataLoader workers started with spawn receive a pickled copy; the flag set in
        # __init__ does not survive pickling of the Rust object.
        self.__dict__.update(state)
        self._tok.encode_special_tokens = True


def _kind_of(hf: HFTokenizer, path: Path) -> str:
    model_type = type(hf.model).__name__
    kind = _KIND_OF_MODEL.get(model_type)
    if kind is None:
        raise TokenizerError(
            f"tokenizer file {path} has a {model_type} model; llmkit tokenizers are "
            f"byte-level BPE or char; {_RETRAIN}"
        )
    return kind


def _check_specials(hf: HFTokenizer, path: Path) -> tuple[str, str, str]:
    """The pad, bos and eos strings; raises unless ids 0, 1, 2 are special tokens."""
    added = hf.get_added_tokens_decoder()
    names = []
    for id_, role in ((PAD_ID, "pad"), (BOS_ID, "bos"), (EOS_ID, "eos")):
        token = added.get(id_)
        if token is None or not token.special:
            found = hf.id_to_token(id_)
            raise TokenizerError(
                f"tokenizer file {path} is not an llmkit tokenizer: id {id_} must be the "
                f"special {role} token, found {found!r}; {_RETRAIN}"
            )
        names.append(token.content)
    return names[0], names[1], names[2]


def _check_vocab(hf: HFTokenizer, path: Path, kind: str, vocab_size: int) -> None:
    # The embedding has vocab_size rows: a gap in the ids would hand out an id >= vocab_size.
    ids = set(hf.get_vocab(with_added_tokens=True).values())
    if ids != set(range(vocab_size)):
        raise TokenizerError(
            f"tokenizer file {path} has {vocab_size} tokens but its ids are not 0..{vocab_size - 1}"
            f"; {_RETRAIN}"
        )
    if kind == "char" and hf.token_to_id(UNK_TOKEN) != UNK_ID:
        raise TokenizerError(
            f"tokenizer file {path} is a char tokenizer without {UNK_TOKEN!r} at id {UNK_ID}; "
            f"{_RETRAIN}"
        )


def _short(e: BaseException, limit: int = 200) -> str:
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
