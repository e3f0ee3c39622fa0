"""`llmkit new --data PATH`: which of the user's files go into the project, and where.

A file lands in `data/<filename>`, a folder in `data/<folder>/` (its sub-folders kept).
Files named like a validation split (`val.jsonl`, `valid.txt`, `dev-00.txt`, ...) become
`data.val`, so validation text is never also trained on; the rest become `data.train`.
Nothing is copied here: this only plans, so that a bad path writes nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from llmkit.errors import ScaffoldError

# What the data code reads, per task: span examples need a JSON line to hold the span.
SUFFIXES = {"lm": (".txt", ".jsonl"), "span": (".jsonl",)}
# A folder with more files than this is listed as globs, not file by file.
MAX_LISTED = 20
_VAL_NAME = re.compile(r"^(val|valid|validation|dev)(?![a-z])", re.IGNORECASE)


@dataclass(frozen=True)
class DataFile:
    """One entry to create under the project's `data/` folder."""

    source: Path  # the user's file (or, for a linked folder, the folder)
    dest: str  # path in the project, POSIX style, e.g. "data/corpus/a.txt"
    link: bool = False  # a symlink to `source` instead of a copy


@dataclass(frozen=True)
class DataPlan:
    """The entries to create and the config's `data.train` / `data.val` for them."""

    entries: list[DataFile]
    train: list[str]
    val: list[str]
    skipped: list[str]  # files in a folder that the task cannot read


def plan_user_data(paths: Path | list[Path], task: str, *, link: bool = False) -> DataPlan:
    """Plan how the user's files and folders (`--data`, repeatable) become the project's data.

    Each path is planned on its own (`_plan_one`) and the plans are joined: files named
    like validation data (val*, valid*, dev*) go to `data.val`, the rest to `data.train`,
    so `--data train.jsonl --data dev.jsonl` keeps the two apart. Only when every file
    looks like validation data are they all trained on (val is then split off).

    Raises:
        ScaffoldError: a path is missing or unreadable for the task, or two paths would
            land on the same name in the project.
    """
    plans = [_plan_one(p, task, link=link) for p in ([paths] if isinstance(paths, Path)
                                                     else paths)]
    entries = [e for plan in plans for e in plan.entries]
    seen: dict[str, Path] = {}
    for e in entries:
        if e.dest in seen and seen[e.dest] != e.source:
            raise ScaffoldError(f"--data {seen[e.dest]} and --data {e.source} would both "
                                f"become {e.dest} in the project; rename one of them")
        seen[e.dest] = e.source
    train = [t for plan in plans for t in plan.train]
    val = [v for plan in plans for v in plan.val]
    if not train:  # every file looks like validation data: train on them, split val off
        train, val = val, []
    skipped = [f for plan in plans for f in plan.skipped]
    return DataPlan(entries, train, val, skipped)


def _plan_one(path: Path, task: str, *, link: bool = False) -> DataPlan:
    """Plan how the user's file or folder at `path` becomes the project's data."""
    path = Path(path).expanduser()
    allowed = SUFFIXES[task]
    allowed_txt = " or ".join(allowed)
    if not path.exists():
        raise ScaffoldError(
            f"--data {path}: no such file or folder; give a {allowed_txt} file or a folder "
            f"of them, or leave --data out to start from the sample data"
        )
    source = path.resolve()  # links made with link=True must work from any folder
    if path.is_file():
        _check_suffix(path, task)
        dest = f"data/{path.name}"  # the name the user gave, even when it is a link
        if _VAL_NAME.match(path.name):
            return DataPlan([DataFile(source, dest, link)], [], [dest], [])
        return DataPlan([DataFile(source, dest, link)], [dest], [], [])

    files, skipped = [], []
    for f in sorted(p for p in source.rglob("*") if p.is_file()):
        rel = f.relative_to(source)
        if any(part.startswith(".") for part in rel.parts):
            continue  # hidden files and caches (.git, .cache) are not data
        (files if f.suffix.lower() in allowed else skipped).append(rel)
    if not files:
        raise ScaffoldError(
            f"--data {path}: the folder holds no {allowed_txt} files; {task} projects "
            f"read {allowed_txt} (see the README of a sample project: `llmkit new demo "
            f"--task {task}`)"
        )
    base = PurePosixPath("data", source.name or "corpus")
    val = [f for f in files if _VAL_NAME.match(f.name)]
    train = [f for f in files if f not in val]
    if not train:  # every file looks like validation data: train on them, split val off
        train, val = val, []
    if link:
        entries = [DataFile(source, str(base), link=True)]
    else:
        entries = [DataFile(source / f, str(base / f.as_posix())) for f in files]
    return DataPlan(
        entries,
        _patterns(base, train, everything=not val),
        [str(base / f.as_posix()) for f in val],
        [str(base / f.as_posix()) for f in skipped],
    )


def _check_suffix(path: Path, task: str) -> None:
    allowed = SUFFIXES[task]
    if path.suffix.lower() not in allowed:
        hint = (" (span examples are JSON lines: {\"text\": ..., \"span\": [start, end] or "
                "null})" if task == "span" else "")
        raise ScaffoldError(
            f"--data {path}: {task} projects read {' or '.join(allowed)} files, not "
            f"{path.suffix or 'files without an extension'}{hint}; convert the file or "
            f"rename it if it already is one"
        )


def _patterns(base: PurePosixPath, files: list[Path], *, everything: bool) -> list[str]:
    """`data.train` for a folder: the files themselves, or globs when there are many.

    Globs are used only when they match exactly the training files (no validation file
    in the folder, all files at its top level); otherwise a glob would leak validation text
    into training.
    """
    flat = all(len(f.parts) == 1 for f in files)
    if len(files) > MAX_LISTED and everything and flat:
        return [str(base / f"*{s}") for s in sorted({f.suffix for f in files})]
    return [str(base / f.as_posix()) for f in files]
