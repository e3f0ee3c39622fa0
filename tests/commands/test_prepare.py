"""`llmkit prepare` and `llmkit size` through the CLI: each number is reported once, and
each finding (warning or note) is computed in one place and printed once."""

from __future__ import annotations

from click.testing import CliRunner

from llmkit.cli import cli


def _run(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_prepare_prints_the_data_report_once(tiny_project) -> None:
    cfg = tiny_project("lm")
    first = _run("-C", str(cfg.root), "prepare")  # encodes
    again = _run("-C", str(cfg.root), "prepare")  # the cache is fresh
    for out in (first, again):
        assert out.count("bytes per token") == 1, out
        assert out.count("vocabulary use") == 1, out


def test_one_number_gets_one_verdict(tiny_project, make_lm_text) -> None:
    # The same text as train and val (overlap 100%) and a bpe vocabulary far larger than
    # the data: each problem is one finding, whichever command reports it.
    # Documents long enough to hold 32-token windows, the same text as train and val
    text = "\n\n".join(" ".join([make_lm_text(n_docs=1, seed=i)] * 8) for i in range(12))
    cfg = tiny_project(files={"data/train.txt": text, "data/val.txt": text},
                       config={"data": {"train": ["data/train.txt"], "val": ["data/val.txt"]},
                               "tokenizer": {"kind": "bpe", "vocab_size": 2000,
                                             "min_frequency": 1}})
    for command in ("prepare", "size"):
        out = _run("-C", str(cfg.root), command)
        lines = [line.strip() for line in out.splitlines()]
        vocab = [w for w in lines if w.startswith("warning:") and "token ids" in w]
        overlap = [w for w in lines if w.startswith("warning:") and "verbatim" in w]
        assert len(vocab) == 1, out
        assert len(overlap) == 1, out
