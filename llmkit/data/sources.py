"""Finding and reading the data files named by `data.train` and `data.val`.

Paths and globs resolve against the project root (`**` matches any depth; hidden files and
the prepared cache are never picked up). A file is JSON Lines when `data.format` says so, or
under `auto` when its name ends in `.jsonl` / `.ndjson`; every other file is plain text.

Documents, the unit of the train/validation split:

- plain text: paragraphs separated by one or more blank lines. A document keeps its inner
  newlines; the blank lines between documents become the EOS token in the prepared data.
  A paragraph longer than `MAX_PIECE_CHARS` is handed out in pieces (split at line ends,
  the newline kept, or inside a line longer than that) so that memory stays bounded on
  any file; only the last piece of a document has `last=True`.
- JSON Lines: one document per line, the text in `data.text_field` (a long text in pieces
  too). A JSON line must be parsed whole: one over `MAX_JSONL_LINE_CHARS` is skipped and
  reported.

Readers stream lines in pieces of at most `MAX_LINE_BYTES` and never hold more than one
piece of a document (or one JSON line). A line that cannot be
used is yielded as a `BadLine` (file:line and reason) for the caller to count and report:
nothing is dropped silently.
"""

from __future__ import annotations

import codecs
import glob
import json
import os
import re
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
MAX_LINE_BYTES = 1 << 20  # bytes of one line read at a time
MAX_JSONL_LINE_CHARS = 16 << 20  # longest JSON line parsed (it must be read whole)

ProgressFn = Callable[[int], None]  # called with the number of bytes just read


@dataclass(frozen=True)
class SourceFile:
    """One data file: where it is, how it is shown to the user, how it is read."""

    path: Path  # absolute
    name: str  # relative to the project root when inside it (posix), else absolute
    format: Format
    size: int  # bytes
    bom: bool = False  # begins with a UTF-8 byte-order mark (dropped when read)


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


def find_files(cfg: Config, patterns: list[str], key: str,
               links: list[str] | None = None) -> list[SourceFile]:
    """Resolve the paths and globs of one config key (`data.train` or `data.val`).

    A folder stands for every file below it. Files come back sorted and without
    duplicates, so the order (and with it the prepared data) does not depend on the
    filesystem. Each real file is listed once (by its resolved path), under the first name
    that reaches it, and a folder is walked once: a symlink back into the tree (`ln -s .
    data/loop`) would otherwise repeat the data once per level the OS allows (41 times).
    Such links are not followed; each is described in `links`, when given, for the report.

    Raises:
        DataError: a pattern matches no file, or a file is a binary/compressed format.
    """
    cache = Path(os.path.realpath(cfg.path(cfg.data.cache_dir)))
    found: dict[Path, Path] = {}  # real path -> the path it was first reached by
    notes: list[str] = []
    for pattern in patterns:
        full = cfg.path(pattern)
        if full.is_file():  # a plain path, even one with glob characters in its name
            matches = [_abs(full)]
        elif full.is_dir():
            matches = _walk(cfg, _abs(full), None, notes)
        elif "**" in Path(pattern).parts:
            base, rest = _split_glob(_abs(full))
            matches = _walk(cfg, base, _glob_regex(rest), notes) if base.is_dir() else []
        else:
            matches = [_abs(m) for m in glob.glob(str(full))]
        files = sorted(p for p in matches
                       if p.is_file() and cache not in Path(os.path.realpath(p)).parents)
        if not files:
            raise DataError(
                f"{key}: {pattern!r} matches no file under {cfg.root}; put your data there "
                f"(.txt for plain text, .jsonl for JSON Lines) or change {key} in llmkit.yaml"
            )
        for p in files:
            real = Path(os.path.realpath(p))
            if real not in found:
                found[real] = p
            elif found[real] != p:
                notes.append(f"{display_name(cfg, p)} is {display_name(cfg, found[real])} "
                             f"again (read once)")
    if links is not None:
        links.extend(dict.fromkeys(notes))
    return [_source_file(cfg, p, key) for p in sorted(found.values())]


def _walk(cfg: Config, top: Path, pattern: re.Pattern[str] | None,
          notes: list[str]) -> list[Path]:
    """The files below `top` whose path relative to it matches `pattern` (None: all).

    Hidden names are skipped, as `glob` does. A folder reached again by its real path (a
    link back into the tree, or a second link to one folder) is not walked again.
    """
    files: list[Path] = []
    walked = {os.path.realpath(top)}
    stack = [top]
    while stack:
        folder = stack.pop()
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name, reverse=True)
        except OSError:
            continue  # unreadable: like glob, match nothing there
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = Path(entry.path)
            if entry.is_dir():  # follows symlinks: a linked data folder is read
                real = os.path.realpath(path)
                if real in walked:
                    notes.append(f"{display_name(cfg, path)} links to "
                                 f"{display_name(cfg, Path(real))}, a folder already read "
                                 f"(not followed)")
                    continue
                walked.add(real)
                stack.append(path)
            elif pattern is None or pattern.fullmatch(path.relative_to(top).as_posix()):
                files.append(path)
    return files


def _split_glob(path: Path) -> tuple[Path, str]:
    """(the folder before the first part with a wildcard, the rest as a posix pattern)."""
    parts = path.parts
    first = next(i for i, part in enumerate(parts) if any(c in part for c in "*?["))
    return Path(*parts[:first]), "/".join(parts[first:])


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """A posix glob (`**` for any depth, `*`, `?` and `[...]` within a name) as a regex."""
    out: list[str] = []
    parts = pattern.split("/")
    for i, part in enumerate(parts):
        if part == "**":
            out.append("(?:[^/]+/)*" if i < len(parts) - 1 else ".*")
            continue
        j = 0
        while j < len(part):
            c = part[j]
            if c == "*":
                out.append("[^/]*")
            elif c == "?":
                out.append("[^/]")
            elif c == "[" and "]" in part[j + 1:]:
                end = part.index("]", j + 1)
                body = part[j + 1:end]
                out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
                j = end
            else:
                out.append(re.escape(c))
            j += 1
        if i < len(parts) - 1:
            out.append("/")
    return re.compile("".join(out))


def _source_file(cfg: Config, path: Path, key: str) -> SourceFile:
    name = display_name(cfg, path)
    suffix = path.suffix.lower()
    if suffix in BINARY_SUFFIXES:
        raise DataError(
            f"{key}: {name} is a {suffix} file; llmkit reads plain text (.txt) and JSON Lines "
            f"(.jsonl): decompress or convert it, or narrow the glob in {key}"
        )
    with open(path, "rb") as fh:
        bom = fh.read(len(codecs.BOM_UTF8)) == codecs.BOM_UTF8
    return SourceFile(path=path, name=name, format=file_format(path, cfg.data.format),
                      size=path.stat().st_size, bom=bom)


def file_format(path: Path, data_format: str) -> Format:
    """How a file is read: as `data.format` says, or under "auto" by its suffix."""
    if data_format != "auto":
        return "jsonl" if data_format == "jsonl" else "text"
    return "jsonl" if path.suffix.lower() in JSONL_SUFFIXES else "text"


def resolve_sources(cfg: Config, links: list[str] | None = None
                    ) -> tuple[list[SourceFile], list[SourceFile]]:
    """The train files and the val files (empty when val is split off train).

    `links`, when given, receives a line for each symlink that was not followed or each
    file reached twice (see `find_files`).

    Raises:
        DataError: no file matches, or a file is listed both as train and val data (its
            text would be in both splits: the validation loss would measure memory).
    """
    train = find_files(cfg, cfg.data.train, "data.train", links)
    val = find_files(cfg, cfg.data.val, "data.val", links) if cfg.data.val else []
    both = sorted({f.name for f in train} & {f.name for f in val})
    if both:
        shown = ", ".join(both[:3]) + (f" and {len(both) - 3} more" if len(both) > 3 else "")
        raise DataError(
            f"{shown} matched by both data.train and data.val: its text would be trained on "
            f"and validated on; make the data.train globs exclude the validation files"
        )
    return train, val


@dataclass(frozen=True, slots=True)
class NotUtf8:
    """Where a line stops being UTF-8 (`utf8_pieces`); each reader words its own error."""

    byte: int | None  # the bad byte; None: the file ends inside a character
    column: int  # 0-based byte column of the bad byte in its line
    reason: str  # the decoder's reason ("invalid start byte", ...)


def utf8_pieces(path: Path, max_bytes: int, on_bytes: ProgressFn | None = None
                ) -> Iterator[tuple[int, str | NotUtf8, bool]]:
    """A file's text as (line number, text, whether the line ends with this piece), in
    pieces of at most `max_bytes` bytes; the text keeps its line end.

    A piece never splits a UTF-8 character (the decoder carries an unfinished one over), so
    a single line of any length never sits in memory whole. A UTF-8 byte-order mark at the
    start of the file is not text and is dropped. A line that is not UTF-8 gives one
    `NotUtf8` (with `True`: the line ends there) and its remaining pieces are passed over;
    pieces of it handed out before the bad byte stay handed out. A file that ends inside a
    character ends with a `NotUtf8` whose `byte` is None.
    """
    with open(path, "rb") as fh:
        lineno, ends, bad, column = 0, True, False, 0
        decoder = codecs.getincrementaldecoder("utf-8")()
        while raw := fh.readline(max_bytes):
            if on_bytes is not None:
                on_bytes(len(raw))
            if ends:  # this piece starts a new line
                lineno, bad, column = lineno + 1, False, 0
                decoder.reset()
                if lineno == 1 and raw.startswith(codecs.BOM_UTF8):
                    raw = raw[len(codecs.BOM_UTF8):]
            ends = raw.endswith(b"\n")
            if bad:
                continue
            try:
                text = decoder.decode(raw, final=ends)
            except UnicodeDecodeError as e:
                # e.object is the bytes held over from the last piece, then this piece.
                bad = True
                at = column - (len(e.object) - len(raw)) + e.start
                yield lineno, NotUtf8(e.object[e.start], at, e.reason), True
                continue
            column += len(raw)
            yield lineno, text, ends
        if not ends and not bad:  # a last line without a line end: flush the decoder
            try:
                decoder.decode(b"", final=True)
            except UnicodeDecodeError as e:
                yield lineno, NotUtf8(None, column, e.reason), True


def _lines(f: SourceFile, on_bytes: ProgressFn | None
           ) -> Iterator[tuple[int, str | BadLine, bool]]:
    """(line number, text, whether the line ends with this piece), line by line, in pieces
    of at most `MAX_LINE_BYTES` bytes (`utf8_pieces`). The last piece of a line comes
    without its line end. A line that is not UTF-8 gives one BadLine (with `True`: the
    line ends there); the file's `bom` says whether a byte-order mark was dropped.
    """
    for lineno, text, ends in utf8_pieces(f.path, MAX_LINE_BYTES, on_bytes):
        if isinstance(text, NotUtf8):
            where = f"{f.name}:{lineno}"
            if text.byte is None:
                yield lineno, BadLine(where, "not UTF-8",
                                      "not valid UTF-8 (the file ends inside a character); "
                                      "re-save the file as UTF-8"), True
            else:
                yield lineno, BadLine(
                    where, "not UTF-8",
                    f"not valid UTF-8 (byte 0x{text.byte:02x} at column {text.column + 1}); "
                    f"re-save the file as UTF-8",
                ), True
            continue
        yield lineno, (text.rstrip("\r\n") if ends else text), ends


def iter_text_documents(f: SourceFile, on_bytes: ProgressFn | None = None
                        ) -> Iterator[Document | BadLine]:
    """Paragraphs of a plain text file (documents separated by blank lines), handed out in
    pieces of about `MAX_PIECE_CHARS` characters (split at line ends, or inside a line
    longer than that): memory stays bounded whatever the paragraph or line length."""
    parts: list[str] = []  # the current piece: lines joined by "\n", as read
    size = 0
    start = 0
    pieces = False  # a piece of the current paragraph was handed out already
    line_start = True  # the next text read starts a line
    for lineno, text, ends in _lines(f, on_bytes):
        if isinstance(text, BadLine):
            yield text
            line_start = True
            continue
        if line_start and ends and not text.strip():  # a blank line ends the paragraph
            if parts or pieces:
                yield Document("".join(parts), f"{f.name}:{start}")
                parts, size, pieces = [], 0, False
            continue
        if not parts and not pieces:
            start = lineno
        if line_start and (parts or pieces):
            # The newline between two lines; after a piece was handed out it starts the
            # next piece, so that the pieces of a paragraph concatenate to the paragraph.
            parts.append("\n")
        parts.append(text)
        size += len(text) + 1
        line_start = ends
        if size >= MAX_PIECE_CHARS:
            yield Document("".join(parts), f"{f.name}:{start}", last=False)
            parts, size, pieces = [], 0, True
    if parts or pieces:
        yield Document("".join(parts), f"{f.name}:{start}")


def iter_jsonl(f: SourceFile, on_bytes: ProgressFn | None = None
               ) -> Iterator[tuple[str, dict[str, Any]] | BadLine]:
    """(file:line, object) for each JSON object line; blank lines are not data and skipped.

    A JSON line must be parsed whole; one longer than `MAX_JSONL_LINE_CHARS` is skipped
    and reported (its pieces are not kept), so memory stays bounded.
    """
    parts: list[str] = []
    size = 0
    too_long = False
    for lineno, text, ends in _lines(f, on_bytes):
        if isinstance(text, BadLine):
            yield text
            parts, size, too_long = [], 0, False
            continue
        where = f"{f.name}:{lineno}"
        if not too_long:
            parts.append(text)
            size += len(text)
            if size > MAX_JSONL_LINE_CHARS:
                parts, too_long = [], True
        if not ends:
            continue
        line = "".join(parts)
        parts, size, was_too_long, too_long = [], 0, too_long, False
        if was_too_long:
            yield BadLine(where, "line too long",
                          f"a JSON line longer than {MAX_JSONL_LINE_CHARS >> 20} Mi characters "
                          f"(llmkit keeps memory bounded); split its text over several lines")
            continue
        if not line.strip():
            continue
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
        doc = document_of(*item, text_field)
        if isinstance(doc, BadLine) or len(doc.text) <= MAX_PIECE_CHARS:
            yield doc
            continue
        # A long text is handed out in pieces, as a long paragraph of a text file is.
        text = doc.text
        for lo in range(0, len(text), MAX_PIECE_CHARS):
            yield Document(text[lo:lo + MAX_PIECE_CHARS], doc.source,
                           last=lo + MAX_PIECE_CHARS >= len(text))


def document_of(where: str, obj: dict[str, Any], text_field: str) -> Document | BadLine:
    """The document in one JSON object's `text_field`, or why it has none.

    A span line with a `context` (and maybe a `question`) instead of the text field is the
    text the model reads: the question, a newline, the context. So the tokenizer learns
    both, and sizing counts both.
    """
    if text_field not in obj and "span" in obj and isinstance(obj.get("context"), str):
        question = obj.get("question")
        text = obj["context"] if not isinstance(question, str) else \
            f"{question}\n{obj['context']}"
        if text.strip():
            return Document(text, where)
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
