"""Finding and reading the data files named by `data.train` and `data.val`.

Paths and globs resolve against the project root (`**` matches any depth; hidden files and
the prepared cache are never picked up). A file is JSON Lines when `data.format` says so, or
under `auto` when its name ends in `.jsonl` / `.ndjson`; every other file is plain text.

Documents, the unit of the train/validation split:

- plain text: paragraphs separated by one or more blank lines. A document keeps its inner
  newlines; the blank lines between documents become the EOS token in the prepared data.
  A paragraph longer than `MAX_PIECE_CHARS` is handed out in pieces (split at line ends,
  the newline kept) so that memory stays bounded on any file; only the last piece of a
  document has `last=True`.
- JSON Lines: one document per line, the text in `data.text_field`.

Readers stream line by line and never hold more than one document. A line that cannot be
used is yielded as a `BadLine` (file:line and reason) for the caller to count and report:
nothing is dropped silently.
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from llmkit.config import Config
from llmkit.errors import DataError

Format = Literal["text", "jsonl"]
JSONL_SUFFIXES = (".jsonl", ".ndjson")
# Files that are certainly not text; reading them line by line would only produce noise.
BINARY_SUFFIXES = (".gz", ".bz2", ".xz", ".zst", ".zip", ".tar", ".npy", ".npz", ".pt",
                   ".bin", ".parquet", ".arrow", ".pkl")
MAX_PIECE_CHARS = 1 << 20  # longest piece of one paragraph held in memory (1 Mi characters)

ProgressFn = Callable[[int], None]  # called with the number of bytes just read


@dataclass(frozen=True)
class SourceFile:
    """One data file: where it is, how it is shown to the user, how it is read."""

    path: Path  # absolute
    name: str  # relative to the project root when inside it (posix), else absolute
    format: Format
    size: int  # bytes


@dataclass(frozen=True, slots=True)
class Document:
    """A document (or one piece of a very long one) and where it starts."""

    text: str
    source: str  # "data/train.txt:12": the file and the 1-based line it starts on
    last: bool = True  # False: the same document continues in the next piece


@dataclass(frozen=True, slots=True)
class BadLine:
    """A line that was skipped, with the reason; the caller counts and reports it."""

    source: str  # file:line
    kind: str  # short category that skips are counted by, e.g. "invalid JSON"
    reason: str  # the full message: what was found, what is allowed, what to do

    def __str__(self) -> str:
        return f"{self.source}: {self.reason}"


def display_name(cfg: Config, path: Path) -> str:
    """`path` relative to the project root when it is inside it, for messages and meta.json."""
    try:
        return path.relative_to(_abs(cfg.root)).as_posix()
    except ValueError:
        return str(path)


def _abs(path: Path | str) -> Path:
    # Absolute but not resolved: a symlinked data file keeps the name the user gave it.
    return Path(os.path.abspath(path))


def find_files(cfg: Config, patterns: list[str], key: str) -> list[SourceFile]:
    """Resolve the paths and globs of one config key (`data.train` or `data.val`).

    A folder stands for every file below it. Files come back sorted and without
    duplicates, so the order (and with it the prepared data) does not depend on the
    filesystem.

    Raises:
        DataError: a pattern matches no file, or a file is a binary/compressed format.
    """
    cache = _abs(cfg.path(cfg.data.cache_dir))
    found: dict[Path, None] = {}
    for pattern in patterns:
        full = cfg.path(pattern)
        if full.is_file():  # a plain path, even one with glob characters in its name
            matches = [str(full)]
        elif full.is_dir():
            matches = glob.glob(str(full / "**" / "*"), recursive=True)
        else:
            matches = glob.glob(str(full), recursive=True)
        files = sorted(
            p for p in (_abs(m) for m in matches)
            if p.is_file() and cache not in p.parents
        )
        if not files:
            raise DataError(
                f"{key}: {pattern!r} matches no file under {cfg.root}; put your data there "
                f"(.txt for plain text, .jsonl for JSON Lines) or change {key} in llmkit.yaml"
            )
        for p in files:
            found.setdefault(p, None)
    return [_source_file(cfg, p, key) for p in sorted(found)]


def _source_file(cfg: Config, path: Path, key: str) -> SourceFile:
    name = display_name(cfg, path)
    suffix = path.suffix.lower()
    if suffix in BINARY_SUFFIXES:
        raise DataError(
            f"{key}: {name} is a {suffix} file; llmkit reads plain text (.txt) and JSON Lines "
            f"(.jsonl): decompress or convert it, or narrow the glob in {key}"
        )
    return SourceFile(path=path, name=name, format=file_format(path, cfg.data.format),
                      size=path.stat().st_size)


def file_format(path: Path, data_format: str) -> Format:
    """How a file is read: as `data.format` says, or under "auto" by its suffix."""
    if data_format != "auto":
        return "jsonl" if data_format == "jsonl" else "text"
    return "jsonl" if path.suffix.lower() in JSONL_SUFFIXES else "text"


def resolve_sources(cfg: Config) -> tuple[list[SourceFile], list[SourceFile]]:
    """The train files and the val files (empty when val is split off train).

    Raises:
        DataError: no file matches, or a file is listed both as train and val data (its
            text would be in both splits: the validation loss would measure memory).
    """
    train = find_files(cfg, cfg.data.train, "data.train")
    val = find_files(cfg, cfg.data.val, "data.val") if cfg.data.val else []
    both = sorted({f.name for f in train} & {f.name for f in val})
    if both:
        shown = ", ".join(both[:3]) + (f" and {len(both) - 3} more" if len(both) > 3 else "")
        raise DataError(
            f"{shown} matched by both data.train and data.val: its text would be trained on "
            f"and validated on; make the data.train globs exclude the validation files"
        )
    return train, val


def _lines(f: SourceFile, on_bytes: ProgressFn | None) -> Iterator[tuple[int, str | BadLine]]:
    """(line number, text without the line end) for each line, or a BadLine if not UTF-8."""
    with open(f.path, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            if on_bytes is not None:
                on_bytes(len(raw))
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                yield lineno, BadLine(
                    f"{f.name}:{lineno}", "not UTF-8",
                    f"not valid UTF-8 (byte 0x{raw[e.start]:02x} at column {e.start + 1}); "
                    f"re-save the file as UTF-8",
                )
                continue
            yield lineno, line.rstrip("\r\n")


def iter_text_documents(f: SourceFile, on_bytes: ProgressFn | None = None
                        ) -> Iterator[Document | BadLine]:
    """Paragraphs of a plain text file (documents separated by blank lines)."""
    lines: list[str] = []
    size = 0
    start = 0
    pieces = False  # a piece of the current paragraph was handed out already
    for lineno, line in _lines(f, on_bytes):
        if isinstance(line, BadLine):
            yield line
            continue
        if not line.strip():
            if lines or pieces:
                yield Document(_join(lines, pieces), f"{f.name}:{start}")
                lines, size, pieces = [], 0, False
            continue
        if not lines and not pieces:
            start = lineno
        lines.append(line)
        size += len(line) + 1
        if size >= MAX_PIECE_CHARS:
            yield Document(_join(lines, pieces), f"{f.name}:{start}", last=False)
            lines, size, pieces = [], 0, True
    if lines or pieces:
        yield Document(_join(lines, pieces), f"{f.name}:{start}")


def _join(lines: list[str], continued: bool) -> str:
    # A piece after the first starts with the newline that ended the piece before it, so
    # that the pieces of a paragraph concatenate to the paragraph.
    text = "\n".join(lines)
    return "\n" + text if continued and lines else text


def iter_jsonl(f: SourceFile, on_bytes: ProgressFn | None = None
               ) -> Iterator[tuple[str, dict[str, Any]] | BadLine]:
    """(file:line, object) for each JSON object line; blank lines are not data and skipped."""
    for lineno, line in _lines(f, on_bytes):
        if isinstance(line, BadLine):
            yield line
            continue
        if not line.strip():
            continue
        where = f"{f.name}:{lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            yield BadLine(where, "invalid JSON", f"invalid JSON ({e.msg} at column {e.colno})")
            continue
        if not isinstance(obj, dict):
            yield BadLine(where, "not an object",
                          f"expected a JSON object, found {type(obj).__name__}")
            continue
        yield where, obj


def iter_jsonl_documents(f: SourceFile, text_field: str, on_bytes: ProgressFn | None = None
                         ) -> Iterator[Document | BadLine]:
    """The `text_field` of each line of a JSON Lines file, one document per line."""
    for item in iter_jsonl(f, on_bytes):
        if isinstance(item, BadLine):
            yield item
            continue
        yield document_of(*item, text_field)


def document_of(where: str, obj: dict[str, Any], text_field: str) -> Document | BadLine:
    """The document in one JSON object's `text_field`, or why it has none."""
    text = obj.get(text_field)
    if text_field not in obj:
        return BadLine(where, "missing text", missing_field(text_field, obj))
    if not isinstance(text, str):
        return BadLine(where, "text not a string",
                       f"{text_field!r} is {type(text).__name__}, not a string")
    if not text.strip():
        return BadLine(where, "empty text", f"{text_field!r} is empty or only whitespace")
    return Document(text, where)


def missing_field(text_field: str, obj: dict[str, Any]) -> str:
    """The message for a JSON object without the text field (names the keys it has)."""
    keys = ", ".join(repr(k) for k in list(obj)[:6]) or "none"
    return (f"no {text_field!r} field (data.text_field); the object's keys are {keys}: set "
            f"data.text_field to the key that holds the text")


def iter_documents(f: SourceFile, text_field: str, on_bytes: ProgressFn | None = None
                   ) -> Iterator[Document | BadLine]:
    """Documents of one file, by its format."""
    if f.format == "jsonl":
        return iter_jsonl_documents(f, text_field, on_bytes)
    return iter_text_documents(f, on_bytes)
