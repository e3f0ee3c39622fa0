"""`llmkit new`: create a project folder from the templates in `llmkit/templates/`.

    from llmkit.scaffold import create_project
    result = create_project("myproj", Path.cwd(), task="span")
    print(result.summary())

Modules: `project` plans, checks and writes the files; `render` renders the jinja2
templates (StrictUndefined); `settings` holds the values a new `llmkit.yaml` gets;
`user_data` plans `--data`. Nothing here imports torch or lightning, so `llmkit new`
starts fast.
"""

from __future__ import annotations

from llmkit.scaffold.project import ScaffoldResult, check_name, create_project
from llmkit.scaffold.render import render_template
from llmkit.scaffold.settings import resolve_size

__all__ = ["ScaffoldResult", "check_name", "create_project", "render_template", "resolve_size"]
