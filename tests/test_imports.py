"""The package has no import cycle: each module can be read knowing only what it imports.

Imports are read from the source (no module is run): every import statement of a module,
at the top or deferred inside a function (a deferred import is still a dependency), plus
the package `__init__` files that importing a submodule runs first. Only imports under
`if TYPE_CHECKING:` (never run) are left out; the packages' lazy exports go through
`importlib` and are the caller's dependency, not the package's.
"""

from __future__ import annotations

import ast
from pathlib import Path

import llmkit

PACKAGE = Path(llmkit.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(tree: ast.Module) -> list[str]:
    """Modules named by the module's import statements, wherever they are."""
    names: list[str] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                names.extend(a.name for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                names.append(child.module)
                names.extend(f"{child.module}.{a.name}" for a in child.names)
            visit(child)

    visit(tree)
    return names


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps: set[str] = set()
        for target in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            parts = target.split(".")
            # importing a.b.c runs a, a.b and a.b.c
            deps.update(".".join(parts[:i]) for i in range(1, len(parts) + 1)
                        if ".".join(parts[:i]) in modules)
        deps.discard(name)
        # a package's __init__ running its own submodules is loading, not a cycle back
        graph[name] = {d for d in deps if not name.startswith(d + ".")}
    return graph


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                return path[path.index(dep):] + [dep]
            if dep not in state and (found := visit(dep)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_reader_sees_real_imports() -> None:
    graph = _graph()
    assert "llmkit.config" in graph["llmkit.data.sources"]  # a plain import is an edge
    assert "llmkit.data" in graph["llmkit.tokenizer.train"]  # so is the package it runs
    assert "llmkit.commands.train" in graph["llmkit.cli"]  # deferred, inside a function
    assert "llmkit.data.cache" not in graph["llmkit.data"]  # under TYPE_CHECKING only


def test_no_import_cycle() -> None:
    cycle = _find_cycle(_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None
