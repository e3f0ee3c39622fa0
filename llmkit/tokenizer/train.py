"""Training a tokenizer on the project's data: byte-level BPE or one token per character.

The data is streamed: text files are read in pieces of at most `_BATCH_CHARS` characters
and handed to the trainer in batches of about that size, so a file of several GB never
sits in memory. JSONL files give the `text_field` string of each line; lines that are not
JSON objects with that string field are skipped and counted (one warning per file, with
the first such line), because `llmkit prepare` reports every bad line in detail and a
tokenizer does not need every line to be useful.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tokenizers import AddedToken, Regex, decoders, models, pre_tokenizers, processors, trainers
from tokenizers import Tokenizer as HFTokenizer

from llmkit.data.sources import (
    BadLine,
    NotUtf8,
    SourceFile,
    file_format,
    iter_jsonl_documents,
    utf8_pieces,
)
from llmkit.errors import TokenizerError
from llmkit.fsutil import atomic_write_text
from llmkit.tokenizer.core import (
    BOS_ID,
    EOS_ID,
    KINDS,
    MIN_BPE_VOCAB,
    PAD_ID,
    UNK_TOKEN,
    Tokenizer,
)

log = logging.getLogger(__name__)

# Upper bound on the characters read at once and handed to the trainer per batch. The
# Rust side keeps a buffer of batches (up to 256), so memory stays within a few MB; larger
# batches were not faster on an 8 MB corpus.
_BATCH_CHARS = 1 << 13
_BYTE_ALPHABET = frozenset(pre_tokenizers.ByteLevel.alphabet())
# Every byte is a token, so a bpe vocabulary can never be smaller than this.


def train_tokenizer(
    files: Sequence[str | os.PathLike[str]],
    out_path: str | os.PathLike[str],
    *,
    kind: str,
    vocab_size: int,
    min_frequency: int = 2,
    bos: str = "<bos>",
    eos: str = "<eos>",
    pad: str = "<pad>",
    text_field: str = "text",
    data_format: str = "auto",
    show_progress: bool = True,
) -> Tokenizer:
    """Train a tokenizer on `files`, save it atomically to `out_path` and load it back.

    Args:
        files: `.txt` files (plain UTF-8 text) and `.jsonl` files (one JSON object a line).
        out_path: where tokenizer.json goes; its folder is created if needed.
        kind: "bpe" (byte-level BPE: any text encodes, no unknown token) or "char" (one
            token per character seen in the data, plus "<unk>" at id 3 for the others).
        vocab_size: the size asked of the bpe trainer, specials included; at least 259
            (3 specials + 256 bytes). Tiny data may give fewer: the real size is
            `Tokenizer.vocab_size`. Ignored for "char", whose vocabulary is exactly the
            characters of the data.
        min_frequency: a bpe merge must occur this often to be learned. Ignored for "char".
        bos, eos, pad: the special tokens' strings; they get ids 1, 2 and 0.
        text_field: the field holding the text in JSONL lines.
        data_format: "auto" (by suffix, as for `llmkit prepare`: `.jsonl` and `.ndjson`
            are JSONL, anything else text), "text" or "jsonl".
        show_progress: show the bpe trainer's progress bar.

    Raises:
        TokenizerError: a file is missing or not UTF-8, the data holds no text, an argument
            is out of range, or a special token collides with a token of the data.
    """
    paths = [Path(f) for f in files]
    specials = (pad, bos, eos)  # in id order: PAD_ID, BOS_ID, EOS_ID
    _check_args(paths, kind, vocab_size, specials, data_format)
    reader = _Reader(paths, data_format, text_field)
    if kind == "bpe":
        hf = _train_bpe(reader.batches(), vocab_size, min_frequency, specials, show_progress)
    else:
        hf = _build_char(reader.batches(), specials)
    reader.report()
    if not reader.has_text:
        names = ", ".join(str(p) for p in paths)
        skipped = f" ({reader.skipped_summary()})" if reader.skipped else ""
        raise TokenizerError(
            f"no text to train the tokenizer on in {names}{skipped}; add text to the data "
            f"files (for JSONL, a string field {text_field!r} on each line)"
        )
    for want, token in zip((PAD_ID, BOS_ID, EOS_ID), specials, strict=True):
        got = hf.token_to_id(token)
        if got != want:  # the ids are llmkit's contract: never hand out a tokenizer without it
            raise TokenizerError(
                f"special token {token!r} got id {got} instead of {want} while training; "
                "use distinct special tokens that do not occur as tokens in the data, like '<bos>'"
            )
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_path, hf.to_str(pretty=True))
    return Tokenizer.load(out_path)


def _check_args(
    paths: list[Path], kind: str, vocab_size: int, specials: tuple[str, ...], data_format: str
) -> None:
    if kind not in KINDS:
        raise TokenizerError(f"tokenizer kind {kind!r} is not one of {', '.join(KINDS)}")
    if data_format not in ("auto", "text", "jsonl"):
        raise TokenizerError(f"data format {data_format!r} is not one of auto, text, jsonl")
    if kind == "bpe" and vocab_size < MIN_BPE_VOCAB:
        raise TokenizerError(
            f"tokenizer vocab_size {vocab_size} is too small for byte-level BPE, which needs "
            f"at least {MIN_BPE_VOCAB} (3 special tokens + 256 bytes); ask for "
            f"{MIN_BPE_VOCAB} or more, or use kind 'char'"
        )
    if len(set(specials)) != len(specials) or not all(specials):
        raise TokenizerError(
            f"special tokens pad, bos, eos must be distinct non-empty strings, got {specials}"
        )
    if kind == "char" and UNK_TOKEN in specials:
        raise TokenizerError(
            f"{UNK_TOKEN!r} is the char tokenizer's unknown token; choose other strings for "
            "tokenizer.pad, bos and eos"
        )
    if not paths:
        raise TokenizerError("no data files to train the tokenizer on; set data.train")
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise TokenizerError(
            f"tokenizer training data not found: {', '.join(missing)}; check data.train"
        )


def _train_bpe(
    batches: Iterator[list[str]],
    vocab_size: int,
    min_frequency: int,
    specials: tuple[str, ...],
    show_progress: bool,
) -> HFTokenizer:
    hf = HFTokenizer(models.BPE())
    # No normalizer: decode(encode(text)) == text and offsets index the text as given.
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    hf.decoder = decoders.ByteLevel()
    # Only trims offsets (it adds no special tokens): "Ġworld" maps to "world", not " world",
    # so a predicted span never starts with the space before a word.
    hf.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=True)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[AddedToken(s, special=True, normalized=False) for s in specials],
        # All 256 bytes, seen or not: any text encodes, with no unknown token.
        initial_alphabet=sorted(_BYTE_ALPHABET),
        show_progress=show_progress,
    )
    hf.train_from_iterator(batches, trainer=trainer)
    # A special string that is also a byte or a learned merge shares its id: the text
    # would then encode to a special id. The trainer does not complain, so check here.
    merges = json.loads(hf.to_str())["model"]["merges"]
    # Merges are [a, b] pairs in tokenizers >= 0.20, "a b" strings before.
    pairs = (m.split(" ", 1) if isinstance(m, str) else m for m in merges)
    learned = _BYTE_ALPHABET | {a + b for a, b in pairs}
    _check_collisions(specials, learned)
    return hf


def _build_char(batches: Iterator[list[str]], specials: tuple[str, ...]) -> HFTokenizer:
    seen: set[str] = set()
    for batch in batches:
        for text in batch:
            seen.update(text)
    _check_collisions(specials, seen)
    # Specials first, then <unk>, then characters by code point: the same data always
    # gives the same ids (and the same hash).
    tokens = [*specials, UNK_TOKEN, *sorted(seen)]
    vocab = {token: i for i, token in enumerate(tokens)}  # <unk> lands on UNK_ID = 3
    hf = HFTokenizer(models.WordLevel(vocab, unk_token=UNK_TOKEN))
    # Every code point is its own "word" (onig regex: [\s\S] also matches newlines).
    hf.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    # Fuse joins tokens without the spaces WordLevel would put between them; an unknown
    # character decodes to U+FFFD, one visible character, like an undecodable byte.
    hf.decoder = decoders.Sequence([decoders.Replace(UNK_TOKEN, "\ufffd"), decoders.Fuse()])
    hf.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    return hf


def _check_collisions(specials: tuple[str, ...], tokens: set[str] | frozenset[str]) -> None:
    clash = [s for s in specials if s in tokens]
    if clash:
        raise TokenizerError(
            f"special token(s) {', '.join(map(repr, clash))} also occur as ordinary tokens of "
            "the data, so text would encode to a special id; set tokenizer.pad/bos/eos to "
            "strings that cannot occur in text, like '<pad>', '<bos>', '<eos>'"
        )


def _text_pieces(path: Path) -> Iterator[str]:
    """A plain text file's text, newlines included, in pieces of at most `_BATCH_CHARS`
    bytes (a file with one huge line is read in pieces too: a word cut in two barely
    changes the merges), a byte-order mark dropped (`data.sources.utf8_pieces`).

    Bytes are decoded piece by piece, so an error names the line that holds the bad byte
    (a text-mode file decodes ahead of what it hands out: its error came lines early).
    """
    for line, text, _ in utf8_pieces(path, _BATCH_CHARS):
        if isinstance(text, NotUtf8):
            if text.byte is None:
                raise TokenizerError(f"{path}:{line} is not UTF-8 text (it ends inside a "
                                     "character); convert the file to UTF-8 or remove it "
                                     "from data.train")
            raise TokenizerError(
                f"{path}:{line} is not UTF-8 text (byte 0x{text.byte:02x}: {text.reason}); "
                "convert the file to UTF-8 or remove it from data.train")
        if text:
            yield text


@dataclass
class _Skipped:
    count: int = 0
    first_line: int = 0
    first_reason: str = ""


@dataclass
class _Reader:
    """Streams the text of the data files in bounded batches and counts what it skipped."""

    paths: list[Path]
    data_format: str
    text_field: str
    has_text: bool = False  # any non-whitespace character seen
    skipped: dict[Path, _Skipped] = field(default_factory=dict)

    def batches(self) -> Iterator[list[str]]:
        """Lists of strings of at most `_BATCH_CHARS` characters in all (a longer JSONL
        text comes alone)."""
        batch: list[str] = []
        size = 0
        for path in self.paths:
            for text in self._texts(path):
                if not self.has_text and not text.isspace():
                    self.has_text = True
                if size + len(text) > _BATCH_CHARS and batch:
                    yield batch
                    batch, size = [], 0
                batch.append(text)
                size += len(text)
        if batch:
            yield batch

    def _texts(self, path: Path) -> Iterator[str]:
        if file_format(path, self.data_format) == "jsonl":
            # The reader `llmkit prepare` uses: the same suffixes, field and bad-line rules.
            f = SourceFile(path=path, name=str(path), format="jsonl", size=path.stat().st_size)
            for item in iter_jsonl_documents(f, self.text_field):
                if isinstance(item, BadLine):
                    self._skip(path, item)
                else:
                    yield item.text
            return
        try:
            yield from _text_pieces(path)
        except OSError as e:
            raise TokenizerError(f"cannot read {path} ({e.strerror}); check data.train") from None

    def _skip(self, path: Path, bad: BadLine) -> None:
        line = int(bad.source.rsplit(":", 1)[1])
        entry = self.skipped.setdefault(path, _Skipped(first_line=line, first_reason=bad.reason))
        entry.count += 1

    def skipped_summary(self) -> str:
        return "; ".join(
            f"{s.count} line(s) of {p} skipped, first at line {s.first_line}: "
            f"{s.first_reason}"
            for p, s in self.skipped.items()
        )

    def report(self) -> None:
        if self.skipped:
            log.warning(
                "tokenizer training: %s; `llmkit prepare` lists every bad line",
                self.skipped_summary(),
            )
