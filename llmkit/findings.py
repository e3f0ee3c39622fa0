"""Findings: what the checks before training found, as data, formatted in one place.

A check (see `llmkit.preflight`) returns a `Finding` with a stable code, a severity, the
numbers that triggered it and what to do; the commands print `Finding.format()` once. The
data report prints numbers only, so one number never gets two verdicts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Severity = Literal["warning", "note"]


@dataclass(frozen=True)
class Finding:
    """One problem found before training.

    Attributes:
        code: stable identifier, e.g. "vocab-unused" (for scripts and tests).
        severity: "warning" (likely to hurt the run) or "note" (worth knowing).
        message: what was found, with its numbers, in words.
        suggestion: the concrete fix.
        numbers: the numbers behind the message, by name.
    """

    code: str
    severity: Severity
    message: str
    suggestion: str
    numbers: dict[str, float] = field(default_factory=dict)

    def format(self) -> str:
        """The one console line: `warning: <message>; <suggestion>`."""
        return f"{self.severity}: {self.message}; {self.suggestion}"
