"""`llmkit size`: the preset table and the recommendation from the prepared data."""

from __future__ import annotations

import json

from llmkit.commands.size import size_command
from llmkit.config import PRESETS


def test_size_command_reports_the_prepared_data(tiny_project) -> None:
    cfg = tiny_project("lm", config={"model": {"size": "tiny", "n_layer": None, "n_head": None,
                                               "n_embd": None, "block_size": None},
                                     "training": {"max_steps": 100}})  # ~20 passes
    messages: list[str] = []
    out = size_command(cfg, log=messages.append)
    meta = json.loads((cfg.path(cfg.data.cache_dir) / "meta.json").read_text())
    report = meta["report"]
    assert f"data: {report['tokens_train']:,} training tokens" in out
    assert f"{report['vocab_used']:,} occur in the training data" in out
    rows = [line for line in out.splitlines() if line[2:].split(" ")[0] in PRESETS]
    assert [r[2:].split()[0] for r in rows] == ["tiny", "small", "base"]
    assert rows[0].startswith("* tiny")  # the configured preset is marked
    assert "recommended: model.size tiny" in out
    assert "warning:" in out  # a few hundred tokens for a 0.8M-parameter trunk
