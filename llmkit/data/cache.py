"""The prepared-data cache: its files, its `meta.json`, and whether it is still fresh.

The cache (`data.cache_dir`) holds, for task lm, `train.npy` / `val.npy` (flat token ids,
documents joined with EOS) and for task span `train.jsonl` / `val.jsonl` (one encoded
example a line, see `llmkit.data.spans`), plus `skipped.jsonl` (every line that was
skipped, with file:line and reason) and `meta.json`.

`meta.json` records what the cache was made from: the tokenizer hash and size, every
source file with its size, mtime and sha256, and the config keys that shape the cache.
`stale_reason` compares these with the project as it is now.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmkit.config import Config
from llmkit.data.npy import NpyFile
from llmkit.data.report import DataReport
from llmkit.data.sources import SourceFile, display_name, resolve_sources
from llmkit.errors import DataError, VocabMismatchError
from llmkit.tokenizer import Tokenizer
from llmkit.yamlio import show

CACHE_VERSION = 3  # bump when the cache layout changes: old caches then count as stale
# 2: meta.json records the size of each data file (a truncated file is seen as damaged)
# 3: span examples stored whole (prefix, context tokens), windows cut when batched
META = "meta.json"
SKIPPED = "skipped.jsonl"


@dataclass(frozen=True)
class PreparedData:
    """A prepared cache: where its files are and what meta.json says about them."""

    cache_dir: Path
    task: str
    train: Path  # train.npy (lm) or train.jsonl (span)
    val: Path
    meta: dict[str, Any]
    rebuilt: bool = False  # True when this call encoded the data, False when it reused it

    @classmethod
    def from_meta(cls, folder: Path, meta: dict[str, Any], rebuilt: bool) -> PreparedData:
        """The cache in `folder` described by `meta`."""
        train, val = file_names(meta["task"])
        return cls(cache_dir=folder, task=meta["task"], train=folder / train,
                   val=folder / val, meta=meta, rebuilt=rebuilt)

    @property
    def report(self) -> DataReport:
        """The data report saved with the cache."""
        return DataReport.from_dict(self.meta["report"])


def cache_dir(cfg: Config) -> Path:
    """The project's cache folder (`data.cache_dir`, resolved)."""
    return cfg.path(cfg.data.cache_dir)


def cache_keys(cfg: Config) -> dict[str, Any]:
    """The config values that shape the cache; changing one makes the cache stale."""
    keys: dict[str, Any] = {
        "project.task": cfg.project.task,
        "project.seed": cfg.project.seed,  # keys the val split hash
        "data.format": cfg.data.format,
        "data.text_field": cfg.data.text_field,
        # Only used when val is split off train: with data.val it changes nothing.
        "data.val_fraction": None if cfg.data.val else cfg.data.val_fraction,
    }
    if cfg.project.task == "span":
        # A prefix must leave room for context in a window, and a stride must fit in one.
        keys["model.block_size"] = cfg.model.block_size
        keys["data.window_stride"] = cfg.data.window_stride
    return keys


def source_roles(cfg: Config, links: list[str] | None = None
                 ) -> list[tuple[SourceFile, str]]:
    """Each source file with its role: "train", "val", or "split" (val split off by hash).

    `links` receives the symlinks that were not followed (see `sources.find_files`)."""
    train, val = resolve_sources(cfg, links)
    if val:
        return [(f, "train") for f in train] + [(f, "val") for f in val]
    return [(f, "split") for f in train]


def source_records(files: list[tuple[SourceFile, str]]) -> list[dict[str, Any]]:
    """What meta.json remembers of each source file, to tell later whether it changed."""
    return [{"name": f.name, "role": role, "size": f.size,
             "mtime_ns": f.path.stat().st_mtime_ns, "sha256": _sha256(f.path)}
            for f, role in files]


def file_names(task: str) -> tuple[str, str]:
    """The train and val file names of a task's cache."""
    return ("train.npy", "val.npy") if task == "lm" else ("train.jsonl", "val.jsonl")


def meta_problem(meta: dict[str, Any]) -> str | None:
    """What is wrong in a meta.json of this version (a missing key, a wrong type), or None.

    Everything later code reads is checked here, so that a damaged or hand-edited file
    means "rebuild", never a KeyError or AttributeError.
    """
    def bad(key: str, value: Any, kind: type | tuple[type, ...]) -> str | None:
        if isinstance(value, kind) and not isinstance(value, bool):
            return None
        return f"{key} is {show(value)}" if value is not None else f"{key} is missing"

    top = {"task": str, "tokenizer": dict, "config": dict, "sources": list, "files": dict,
           "sizes": dict, "report": dict}
    for key, kind in top.items():
        if problem := bad(key, meta.get(key), kind):
            return problem
    if meta["task"] not in ("lm", "span"):
        return f"task is {show(meta['task'])}"
    tok = meta["tokenizer"]
    if problem := (bad("tokenizer.hash", tok.get("hash"), str)
                   or bad("tokenizer.vocab_size", tok.get("vocab_size"), int)):
        return problem
    for i, source in enumerate(meta["sources"]):
        if not isinstance(source, dict):
            return f"sources[{i}] is {show(source)}"
        for key, kind in (("name", str), ("role", str), ("size", int), ("mtime_ns", int),
                          ("sha256", str)):
            if problem := bad(f"sources[{i}].{key}", source.get(key), kind):
                return problem
    for name in file_names(meta["task"]):
        if problem := bad(f"sizes.{name}", meta["sizes"].get(name), int):
            return problem
    if meta["task"] == "lm" and meta.get("dtype") not in ("uint16", "uint32"):
        return f"dtype is {show(meta.get('dtype'))}"
    report = meta["report"]
    for key in ("documents_train", "documents_val", "tokens_train", "tokens_val",
                "bytes_train", "bytes_val", "vocab_size", "vocab_used"):
        if problem := bad(f"report.{key}", report.get(key), int):
            return problem
    try:
        DataReport.from_dict(report)
    except (TypeError, ValueError) as e:
        return f"report is not a data report ({e})"
    return None


def data_file_problem(folder: Path, meta: dict[str, Any]) -> str | None:
    """Whether the cache's data files are those meta.json describes: present, of the size
    it recorded, and (task lm) with an intact .npy header of the recorded dtype and length.
    `meta` must have passed `meta_problem`."""
    report = DataReport.from_dict(meta["report"])
    lengths = {"train.npy": report.tokens_train, "val.npy": report.tokens_val}
    for name in file_names(meta["task"]):
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        size, want = path.stat().st_size, meta["sizes"][name]
        if size != want:
            return f"{name} is damaged (size {size:,} bytes, meta.json recorded {want:,})"
        if meta["task"] != "lm":
            continue
        try:
            ids = NpyFile(path)
        except Exception as e:  # numpy raises ValueError, SyntaxError, ... on a bad header
            return f"{name} is damaged (its .npy header cannot be read: {type(e).__name__})"
        expected_size = ids.offset + len(ids) * ids.dtype.itemsize
        if ids.dtype.name != meta["dtype"] or len(ids) != lengths[name] or size != expected_size:
            return (f"{name} is damaged (header: {len(ids):,} {ids.dtype.name} ids in "
                    f"{size:,} bytes; meta.json: {lengths[name]:,} {meta['dtype']} ids)")
    return None


def read_meta(folder: Path) -> dict[str, Any] | None:
    """The cache's meta.json, or None when it is missing or unreadable."""
    try:
        meta = json.loads((folder / META).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return meta if isinstance(meta, dict) else None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def stale_reason(cfg: Config, tok: Tokenizer,
                 files: list[tuple[SourceFile, str]] | None = None) -> str | None:
    """Why the cache must be rebuilt, in words; None when it is fresh.

    Sources are compared by size and mtime first; only a file whose mtime changed is
    hashed again (a `touch` alone does not make the cache stale). `files` is
    `source_roles(cfg)` when the caller has it already (found here otherwise: that walks
    the folders and opens every file).

    Raises:
        DataError: a data path or glob matches no file (there is nothing to compare with).
    """
    folder = cache_dir(cfg)
    meta = read_meta(folder)
    if meta is None:
        return "no cache yet"
    if meta.get("version") != CACHE_VERSION:
        return (f"the cache format changed (version {show(meta.get('version'))} -> "
                f"{CACHE_VERSION})")
    if problem := meta_problem(meta):
        return f"{META} is damaged ({problem})"
    old_tok = meta.get("tokenizer", {})
    if old_tok.get("hash") != tok.hash:
        return (f"tokenizer changed (hash {str(old_tok.get('hash'))[:12]} -> "
                f"{tok.hash[:12]})")
    old_keys = meta.get("config", {})
    for key, value in cache_keys(cfg).items():
        if key not in old_keys or old_keys[key] != value:
            return f"{key} changed {old_keys.get(key)} -> {value}"
    # The loop compared config["project.task"]; the files are named by meta["task"], and
    # a hand-edited meta.json can hold two different tasks.
    if meta["task"] != cfg.project.task:
        return f"project.task changed {meta['task']} -> {cfg.project.task}"
    if problem := data_file_problem(folder, meta):
        return f"{display_name(cfg, folder)}/{problem}"
    if files is None:
        files = source_roles(cfg)
    return _sources_changed(meta.get("sources", []), files)


def _sources_changed(old: list[dict[str, Any]], now: list[tuple[SourceFile, str]]
                     ) -> str | None:
    before = {s["name"]: s for s in old}
    for f, role in now:
        s = before.pop(f.name, None)
        if s is None:
            return f"{f.name} is new"
        if s.get("role") != role:
            return f"{f.name} changed role ({s.get('role')} -> {role})"
        if s.get("size") != f.size:
            return f"{f.name} changed (size {s.get('size')} -> {f.size} bytes)"
        if s.get("mtime_ns") != f.path.stat().st_mtime_ns and s.get("sha256") != _sha256(f.path):
            return f"{f.name} changed (same size, different content)"
    if before:
        return f"{next(iter(before))} is no longer in the data"
    return None


def load_prepared(cfg: Config, tok: Tokenizer) -> PreparedData:
    """Open an existing cache for training, checking that it fits the tokenizer.

    Raises:
        DataError: there is no cache (run `llmkit prepare`), or it was made for another task.
        VocabMismatchError: the cache was encoded with a different tokenizer.
    """
    folder = cache_dir(cfg)
    meta = read_meta(folder)
    where = display_name(cfg, folder)
    if meta is None or meta.get("version") != CACHE_VERSION:
        raise DataError(f"no prepared data in {where}; run `llmkit prepare`")
    if problem := meta_problem(meta):
        raise DataError(f"{where}/{META} is damaged ({problem}); run `llmkit prepare` to "
                        f"rebuild the cache")
    if meta.get("task") != cfg.project.task:
        raise DataError(f"the data in {where} was prepared for task {meta.get('task')!r}, the "
                        f"project's task is {cfg.project.task!r}; run `llmkit prepare`")
    t = meta["tokenizer"]
    if t["vocab_size"] != tok.vocab_size or t["hash"] != tok.hash:
        raise VocabMismatchError(
            f"the data in {where} was encoded with a tokenizer of {t['vocab_size']} tokens "
            f"(hash {t['hash'][:12]}), the current tokenizer {tok.path} has {tok.vocab_size} "
            f"tokens (hash {tok.hash[:12]}); run `llmkit prepare` to encode the data again"
        )
    if problem := data_file_problem(folder, meta):
        raise DataError(f"{where}/{problem}; run `llmkit prepare` to rebuild the cache")
    return PreparedData.from_meta(folder, meta, rebuilt=False)
