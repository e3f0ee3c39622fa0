"""How library code talks to the user without knowing where the words go.

A `Log` is any callable taking one line of text: `print`, `click.echo`, a list's `append`
in tests. Library code takes one as an argument and never prints on its own.
"""

from __future__ import annotations

from collections.abc import Callable

Log = Callable[[str], None]


def quiet(_: str) -> None:
    """A `Log` that drops every line (DDP ranks other than 0, benchmarks)."""
