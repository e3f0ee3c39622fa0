"""Rendering the project templates in `llmkit/templates/`.

Layout of the template tree: `common/` holds files every project gets; `lm/` and `span/`
hold a task's own files and override a common file of the same output name. A file ending
in `.j2` is rendered with jinja2 and loses the suffix; any other file (sample data) is
copied byte for byte. A name starting with `_` is a partial (a base template to extend)
and is never written on its own. Rendering uses `StrictUndefined`: a variable missing from
the context is an error, never an empty string in a user's config.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib.resources import files
from typing import TYPE_CHECKING, Any

import jinja2
import yaml

if TYPE_CHECKING:  # importlib.resources.abc is 3.11+; only the annotations need it
    from importlib.resources.abc import Traversable

TEMPLATE_PACKAGE = "llmkit.templates"
COMMON = "common"

# Package data drops or hides dotfiles, so they are stored without the dot.
_RENAMES = {"gitignore": ".gitignore"}
_SKIP = {"__pycache__", "__init__.py"}


@dataclass(frozen=True)
class TemplateFile:
    """One file of the template tree: where it comes from and where it goes."""

    name: str  # the template's name for jinja2, e.g. "lm/llmkit.yaml.j2"
    source: Traversable  # the packaged file
    output: str  # path in the new project, POSIX style, e.g. "llmkit.yaml"

    @property
    def rendered(self) -> bool:
        return self.name.endswith(".j2")


def to_yaml(value: Any) -> str:
    """One YAML value on one line, quoted only where YAML needs it.

    Project names like `yes`, `null` or `1e3` must stay strings, and paths with spaces or
    `#` must survive a reload, so values go through the YAML dumper rather than `str()`.
    """
    if isinstance(value, jinja2.Undefined):
        # A filter is handed the Undefined itself; turning it into text makes StrictUndefined
        # raise its UndefinedError (naming the variable) instead of a YAML dumper error.
        str(value)
        raise jinja2.UndefinedError(f"undefined value passed to the yaml filter: {value!r}")
    text = yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, width=10_000)
    return text.strip().removesuffix("...").strip()  # scalars end with a "..." marker


@functools.cache
def environment() -> jinja2.Environment:
    """The jinja2 environment for llmkit's templates (built once)."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("llmkit", "templates"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,  # a line holding only a {% tag %} leaves no blank line
        lstrip_blocks=True,
        autoescape=False,  # YAML and Markdown, not HTML
    )
    env.filters["yaml"] = to_yaml
    return env


def render_template(name: str, context: Mapping[str, Any]) -> str:
    """Render the template `name` (e.g. "lm/llmkit.yaml.j2") with `context`.

    Raises jinja2.UndefinedError when the template uses a variable the context lacks: that
    is a bug in llmkit, so it keeps its traceback.
    """
    return environment().get_template(name).render(context)


def template_files(task: str, *, sample_data: bool = True) -> list[TemplateFile]:
    """The files of a `task` project: common ones first, the task's own override them.

    With `sample_data=False` (the user brings data) the task's `data/` folder is left out.
    """
    root = files(TEMPLATE_PACKAGE)
    by_output: dict[str, TemplateFile] = {}
    for folder in (COMMON, task):
        for rel, source in _walk(root.joinpath(folder)):
            if not sample_data and rel[0] == "data":
                continue
            parts = list(rel)
            last = parts[-1].removesuffix(".j2")
            parts[-1] = _RENAMES.get(last, last)
            out = "/".join(parts)
            by_output[out] = TemplateFile("/".join((folder, *rel)), source, out)
    return sorted(by_output.values(), key=lambda f: (f.output.count("/"), f.output))


def _walk(folder: Traversable, rel: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...],
                                                                           Traversable]]:
    if not folder.is_dir():
        return
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name in _SKIP or entry.name.startswith((".", "_")):
            continue
        if entry.is_dir():
            yield from _walk(entry, (*rel, entry.name))
        else:
            yield (*rel, entry.name), entry
