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


def test_size_command_reports_span_lengths_and_windows(tiny_project) -> None:
    # Char tokenizer, block_size 32: 30 examples of 20-24 characters and 3 of 100.
    rows = [json.dumps({"text": "x" * (20 + i % 5), "span": None}) for i in range(30)]
    rows += [json.dumps({"text": "y" * 100, "span": [3, 9]}) for _ in range(3)]
    cfg = tiny_project("span", files={"data/train.jsonl": "\n".join(rows) + "\n"})
    out = size_command(cfg, log=lambda m: None)
    report = json.loads((cfg.path(cfg.data.cache_dir) / "meta.json").read_text())["report"]
    p = report["example_tokens"]
    assert p["max"] == 102  # 100 characters + <bos> + <eos>
    assert (f"example length: median {p['p50']}, p90 {p['p90']}, p99 102, max 102 tokens"
            in out)
    fit = 1 - report["multi_window_examples"] / (report["documents_train"]
                                                 + report["documents_val"])
    assert f"model.block_size 32: {fit:.0%} of examples fit one window" in out
    assert "the longest 6" in out  # 100 context tokens, 30 a window, 15 apart
    assert "model.block_size 128 would hold 90% of the examples in one window" not in out
