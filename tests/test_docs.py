"""The docs name every config key the code accepts, and no key it does not."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from llmkit.config import SECTIONS

DOCS = Path(__file__).resolve().parents[1] / "docs" / "config.md"


def test_config_reference_lists_exactly_the_real_keys() -> None:
    documented = set(re.findall(r"^\| `([a-z_]+\.[a-z_]+)` \|", DOCS.read_text(), re.M))
    real = {f"{name}.{f.name}" for name, cls in SECTIONS.items()
            for f in dataclasses.fields(cls)}
    assert documented == real
