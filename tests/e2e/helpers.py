"""Small helpers the end-to-end tests share (fixtures live in conftest.py)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path


def overrides(options: list[str]) -> list[str]:
    """["a=1", "b=2"] -> ["-o", "a=1", "-o", "b=2"]: config overrides as CLI arguments."""
    return [arg for option in options for arg in ("-o", option)]


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    """The CLI's error line: exit status 1, one line on stderr, no traceback."""
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), proc.stderr
    return lines[0]


def trained_project(parent: Path, llmkit: Callable[..., subprocess.CompletedProcess],
                    options: list[str], steps: int = 10) -> Path:
    """`llmkit new proj` in `parent`, then `llmkit train` for `steps` with these config
    overrides: a project with real checkpoints and TensorBoard events."""
    llmkit("new", "proj", cwd=parent)
    root = parent / "proj"
    llmkit("train", "--max-steps", str(steps), *overrides(options), cwd=root, timeout=240)
    return root
