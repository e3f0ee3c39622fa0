"""`llmkit prepare`: validate the data and encode it into the cache, once.

The order of the steps is what keeps the cache honest: `meta.json` is deleted first and
written last, and the data files are written under temporary names and renamed into place
(`data.pipeline.write_sides`), so a crash never leaves a cache that looks fresh. The files
and their freshness are `data.cache`; the split policy is `data.split`; the two task
passes are `data.lm_pass` and `data.span_pass`.
"""

from __future__ import annotations

import dataclasses
import json
import time
from datetime import datetime, timezone
from pathlib import Path

from llmkit.config import Config
from llmkit.console import Log
from llmkit.data.cache import (
    CACHE_VERSION,
    META,
    SKIPPED,
    PreparedData,
    cache_dir,
    cache_keys,
    file_names,
    load_prepared,
    read_meta,
    source_records,
    source_roles,
    stale_reason,
)
from llmkit.data.lm_pass import prepare_lm
from llmkit.data.npy import token_dtype
from llmkit.data.sources import display_name
from llmkit.data.span_pass import prepare_span
from llmkit.errors import DataError
from llmkit.fsutil import atomic_write_text
from llmkit.tokenizer import Tokenizer

__all__ = ["PreparedData", "load_prepared", "prepare_data", "stale_reason"]



def prepare_data(cfg: Config, tok: Tokenizer, *, force: bool = False, progress: bool = True,
                 log: Log = print) -> PreparedData:
    """Encode the project's data into its cache unless the cache is fresh.

    Args:
        cfg: the project config (task, data paths, split, block size for spans).
        tok: the project's tokenizer; its hash and size are recorded in meta.json.
        force: rebuild even when the cache is fresh.
        progress: show a progress line on stderr while encoding large data.
        log: where the summary and the data report go (one string per call).

    Raises:
        DataError: no usable data, no validation data possible, or a bad format.
        TokenIdError: the tokenizer produced an id outside its own vocabulary.
    """
    folder = cache_dir(cfg)
    _remove_leftovers(folder, cfg, log)
    links: list[str] = []
    files = source_roles(cfg, links)
    for note in links:
        log(f"warning: {note}")  # a link back into the data: each file is read once
    reason = "forced" if force else stale_reason(cfg, tok, files)
    if reason is None:
        meta = read_meta(folder)
        assert meta is not None
        prepared = PreparedData.from_meta(folder, meta, rebuilt=False)
        log(f"data cache {display_name(cfg, folder)} is up to date; data report:\n"
            f"{prepared.report.format()}")
        return prepared
    if not cfg.data.val and cfg.data.val_fraction == 0:
        raise DataError(
            "data.val_fraction is 0 and data.val is empty: training needs validation data "
            "for the validation loss and the overfitting monitor; set data.val_fraction "
            "(e.g. 0.1) or list validation files in data.val"
        )
    log(f"preparing data in {display_name(cfg, folder)} ({reason})")
    started = time.monotonic()
    folder.mkdir(parents=True, exist_ok=True)
    # Without meta.json the cache is never fresh, whatever happens until it is rewritten.
    (folder / META).unlink(missing_ok=True)
    sources = source_records(files)
    if cfg.project.task == "lm":
        report = prepare_lm(cfg, tok, folder, files, progress, log)
        dtype: str | None = token_dtype(tok.vocab_size).name
    else:
        report = prepare_span(cfg, tok, folder, files, progress, log)
        dtype = None
    report = dataclasses.replace(report, links=links,
                                 bom_files=sum(f.bom for f, _ in files))
    meta = {
        "version": CACHE_VERSION,
        "task": cfg.project.task,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(time.monotonic() - started, 3),
        "tokenizer": {"hash": tok.hash, "vocab_size": tok.vocab_size, "kind": tok.kind},
        "dtype": dtype,
        "config": cache_keys(cfg),
        "sources": sources,
        "files": dict(zip(("train", "val"), file_names(cfg.project.task), strict=True),
                      skipped=SKIPPED),
        "sizes": {name: (folder / name).stat().st_size for name in file_names(cfg.project.task)},
        "report": report.to_dict(),
    }
    atomic_write_text(folder / META, json.dumps(meta, indent=2) + "\n")
    log("data report:\n" + report.format())
    return PreparedData.from_meta(folder, meta, rebuilt=True)


def _remove_leftovers(folder: Path, cfg: Config, log: Log) -> None:
    """Delete the temporary files a killed preparation left in the cache (`fsutil` names
    them `.<name>.<random>.tmp`); the project lock keeps a running one from being hit."""
    leftovers = sorted(folder.glob(".*.tmp")) if folder.is_dir() else []
    for path in leftovers:
        path.unlink(missing_ok=True)
    if leftovers:
        names = ", ".join(p.name for p in leftovers[:3])
        more = f" and {len(leftovers) - 3} more" if len(leftovers) > 3 else ""
        log(f"removed {len(leftovers)} temporary file(s) left in {display_name(cfg, folder)} "
            f"by an interrupted preparation: {names}{more}")
