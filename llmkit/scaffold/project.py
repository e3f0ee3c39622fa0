"""`llmkit new NAME`: plan every file of a new project, check the plan, then write it.

The order is the safety story. Planning renders every template and decides every path
without touching the disk, so a bad name, a missing `--data` path or a template bug
writes nothing. Every planned path is then checked to stay inside the project folder
(symlinks resolved). Only then is anything written, each file through a temporary file
and `os.replace`, so no file is ever left half written.
"""

from __future__ import annotations

import os
import shlex
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from llmkit import __version__
from llmkit.config import MAX_NAME_CHARS, project_name_problem
from llmkit.errors import ScaffoldError
from llmkit.fsutil import atomic_path, atomic_write_bytes
from llmkit.scaffold.render import render_template, template_files
from llmkit.scaffold.settings import (
    check_task,
    config_values,
    own_span_settings,
    resolve_size,
)
from llmkit.scaffold.user_data import DataFile, plan_user_data

_NAME_RULES = (
    "allowed: one plain folder name such as `myproj` (not empty, not '.' or '..', no '/' "
    "or '\\', no leading '-', no spaces at either end, no control characters, at most "
    f"{MAX_NAME_CHARS} characters); to create "
    "the project somewhere else, cd there first"
)


@dataclass(frozen=True)
class ScaffoldResult:
    """What `create_project` made: the CLI prints `summary()`."""

    root: Path  # the project folder
    task: str
    size: str  # the size preset written into llmkit.yaml
    files: tuple[str, ...]  # written files, relative to `root`, POSIX style
    next_command: str  # e.g. "cd myproj && llmkit train"
    notes: tuple[str, ...] = field(default=())  # things the user should know (skipped files)

    def summary(self) -> str:
        """The text `llmkit new` prints: each created file, then the next command."""
        lines = [f"Created {self.task} project {self.root.name} (size preset {self.size}):"]
        lines += [f"  {self.root.name}/{f}" for f in self.files]
        lines += [f"Note: {n}" for n in self.notes]
        lines.append(f"Next: {self.next_command}")
        return "\n".join(lines)


@dataclass(frozen=True)
class _Planned:
    """One file to write: rendered or packaged bytes, or a user's file to copy or link."""

    rel: str  # POSIX path inside the project
    content: bytes | None = None
    data: DataFile | None = None


def create_project(
    name: str,
    parent: Path,
    *,
    task: str = "lm",
    size: str = "auto",
    data: Path | Sequence[Path] | None = None,
    force: bool = False,
    link_data: bool = False,
) -> ScaffoldResult:
    """Create the project `parent/name` that trains out of the box.

    Args:
        name: the project folder's name (a plain folder name; also `project.name`).
        parent: an existing folder to create the project in.
        task: "lm" (causal language model) or "span" (span prediction).
        size: a size preset name, or "auto" (see `resolve_size`).
        data: the user's files or folders of .txt/.jsonl files, used instead of the
            sample; files named like validation data (val*, valid*, dev*) become data.val.
        force: write into an existing non-empty folder, overwriting llmkit's files there;
            nothing else in the folder is touched or deleted.
        link_data: symlink `data` into the project instead of copying it (big corpora).

    Raises:
        ScaffoldError: a bad name, task, size or data path, or a folder that is in the way.

    Example:
        >>> create_project("shakespeare", Path.cwd()).summary()  # doctest: +SKIP
    """
    check_name(name)
    check_task(task)
    parent = Path(parent)
    if not parent.is_dir():
        raise ScaffoldError(f"cannot create {name!r} in {parent}: no such folder; create it "
                            f"first or run `llmkit new` in an existing folder")
    target = parent / name
    _check_target(target, force)

    paths = [] if data is None else [data] if isinstance(data, (str, Path)) else list(data)
    plan, notes, size = _plan(name, task, size, [Path(p) for p in paths], link_data)
    root = target.resolve()  # the folder every planned path must stay inside
    for item in plan:
        _check_inside(root, item.rel)

    root.mkdir(exist_ok=True)
    for item in plan:
        _write(root, item)
    return ScaffoldResult(root, task, size, tuple(p.rel for p in plan),
                          _next_command(target), tuple(notes))


def check_name(name: str) -> None:
    """Refuse a project name that is not one plain folder name."""
    reason = project_name_problem(name)
    if reason:
        raise ScaffoldError(f"project name {name!r} {reason}; {_NAME_RULES}")


def _check_target(target: Path, force: bool) -> None:
    if target.exists() and not target.is_dir():
        raise ScaffoldError(f"{target} exists and is not a folder; choose another name or "
                            f"move that file away")
    if target.is_dir() and any(target.iterdir()) and not force:
        raise ScaffoldError(
            f"{target} already exists and is not empty; choose another name, or pass --force "
            f"to write llmkit's files into it (files of the same name are overwritten, "
            f"nothing else is deleted)"
        )


def _plan(name: str, task: str, size: str, data: list[Path],
          link_data: bool) -> tuple[list[_Planned], list[str], str]:
    """Every file of the new project rendered in memory, notes, the preset; writes nothing."""
    data_plan = plan_user_data(data, task, link=link_data) if data else None
    preset, extra = resolve_size(size, data or None, task)  # after the data paths were checked
    notes: list[str] = []
    if data and task == "span":
        own, notes = own_span_settings(data, size, preset)
        for section, settings in own.items():
            extra.setdefault(section, {}).update(settings)
    size = preset
    if data_plan is None:
        values = config_values(name, task, size, extra=extra)
    else:
        values = config_values(name, task, size, train=data_plan.train, val=data_plan.val,
                               extra=extra)
    context = template_context(values, own_data=data_plan is not None)

    plan: list[_Planned] = []
    for tf in template_files(task, sample_data=data_plan is None):
        if tf.rendered:
            content = render_template(tf.name, context).encode("utf-8")
        else:
            content = tf.source.read_bytes()
        plan.append(_Planned(tf.output, content=content))
    if data_plan is None:
        _check_sample_shipped(task, values["data"], {p.rel for p in plan})
    if data_plan is not None:
        plan += [_Planned(entry.dest, data=entry) for entry in data_plan.entries]
        if skipped := data_plan.skipped:
            more = f" and {len(skipped) - 5} more" if len(skipped) > 5 else ""
            notes.append(f"not used as data (a {task} project reads other file types): "
                         f"{', '.join(skipped[:5])}{more}")
    return plan, notes, size


def _check_sample_shipped(task: str, data: dict[str, Any], planned: set[str]) -> None:
    """A sample project must ship the files its config names, or it cannot train."""
    missing = [p for p in (*data["train"], *data["val"]) if p not in planned]
    if missing:
        raise ScaffoldError(
            f"llmkit's {task} template is incomplete: its sample data {', '.join(missing)} "
            f"is missing from the installed package; reinstall llmkit, or pass --data PATH "
            f"to use your own data"
        )


def template_context(values: dict[str, dict[str, Any]], *, own_data: bool) -> dict[str, Any]:
    """The variables the templates see: one mapping per config section, plus a few facts."""
    return {
        **values,
        "own_data": own_data,  # the user's --data, not the sample
        "llmkit_version": __version__,
    }


def _check_inside(root: Path, rel: str) -> None:
    """Refuse a planned path that would land outside `root` or on top of a folder."""
    parts = PurePosixPath(rel).parts
    if not parts or PurePosixPath(rel).is_absolute() or any(p in ("", ".", "..")
                                                           for p in parts):
        raise ScaffoldError(f"refusing to write {rel!r}: not a plain path inside the project")
    dest = root.joinpath(*parts)
    # Resolve the folder, not the file: an existing file that is a symlink (a linked data
    # file from an earlier run) is replaced as a link, never written through.
    folder = dest.parent.resolve()
    if folder != root and root not in folder.parents:
        raise ScaffoldError(
            f"refusing to write {rel}: it would land in {folder}, outside the project "
            f"{root} (a symlink inside the project points out of it); remove that link or "
            f"choose another name"
        )
    if dest.is_dir() and not dest.is_symlink():
        raise ScaffoldError(f"cannot write {dest}: a folder of that name is in the way; "
                            f"move it away or choose another project name")
    for ancestor in dest.parents:
        if ancestor == root:
            break
        if ancestor.exists() and not ancestor.is_dir():
            raise ScaffoldError(f"cannot write {dest}: {ancestor} is a file, not a folder; "
                                f"move it away or choose another project name")


def _write(root: Path, item: _Planned) -> None:
    dest = root.joinpath(*PurePosixPath(item.rel).parts)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if item.content is not None:
        atomic_write_bytes(dest, item.content)
    elif item.data is not None and _already_there(dest, item.data.source):
        return  # --data named a file inside the project: it is in place, never clobber it
    elif item.data is not None and item.data.link:
        _symlink(item.data.source, dest)
    elif item.data is not None:
        # os.replace swaps a link from an earlier --link-data run for the copy; the data
        # it pointed to is never written through.
        with atomic_path(dest) as tmp:
            shutil.copyfile(item.data.source, tmp)


def _already_there(dest: Path, source: Path) -> bool:
    return dest.exists() and not dest.is_symlink() and dest.samefile(source)


def _symlink(source: Path, dest: Path) -> None:
    """Point `dest` at `source`, replacing whatever file or link is there atomically."""
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        os.symlink(source, tmp, target_is_directory=source.is_dir())
        os.replace(tmp, dest)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise ScaffoldError(f"cannot link {dest} to {source}: {e.strerror or e}; leave out "
                            f"--link-data to copy the data instead") from None


def _next_command(target: Path) -> str:
    """`cd NAME && llmkit train`, with the path as the user would type it from here."""
    try:
        where = target.absolute().relative_to(Path.cwd())
    except ValueError:
        where = target.absolute()
    return f"cd {shlex.quote(str(where))} && llmkit train"
