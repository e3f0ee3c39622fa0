"""A damaged cache is rebuilt with a message, never trusted: files checked by size and
header, meta.json by its keys and types; temporary files of a killed preparation are
removed."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from llmkit.config import Config
from llmkit.data.prepare import load_prepared, prepare_data


def _quiet(_: str) -> None:
    pass


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _garbage_header(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[:16] = b"not a numpy file"
    path.write_bytes(bytes(data))


def _meta_edit(change: Callable[[dict], None]) -> Callable[[Path], None]:
    def edit(folder_meta: Path) -> None:
        meta = json.loads(folder_meta.read_text())
        change(meta)
        folder_meta.write_text(json.dumps(meta))
    return edit


DAMAGE = {
    "truncated train.npy": ("train.npy", _truncate, "train.npy is damaged"),
    "empty train.npy": ("train.npy", _empty, "train.npy is damaged"),
    "garbage header": ("val.npy", _garbage_header, "val.npy is damaged"),
    "sources of the wrong type": ("meta.json", _meta_edit(lambda m: m.update(sources="x")),
                                  "meta.json is damaged (sources is 'x')"),
    "tokenizer missing": ("meta.json", _meta_edit(lambda m: m.pop("tokenizer")),
                          "meta.json is damaged (tokenizer is missing)"),
    "a report number as text": ("meta.json",
                                _meta_edit(lambda m: m["report"].update(tokens_train="many")),
                                "meta.json is damaged"),
    "a source without its hash": ("meta.json",
                                  _meta_edit(lambda m: m["sources"][0].pop("sha256")),
                                  "meta.json is damaged (sources[0].sha256 is missing)"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_cache_is_rebuilt_with_a_message(tiny_project, project_tokenizer,
                                                   damage: str) -> None:
    cfg: Config = tiny_project()
    tok = project_tokenizer(cfg)
    cfg = cfg.replace("model", vocab_size=tok.vocab_size)
    first = prepare_data(cfg, tok, progress=False, log=_quiet)
    name, damage_it, reason = DAMAGE[damage]
    damage_it(first.cache_dir / name)

    said: list[str] = []
    again = prepare_data(cfg, tok, progress=False, log=said.append)
    assert again.rebuilt, said
    assert any(line.startswith("preparing data in") and reason in line for line in said), said
    assert again.report == first.report
    assert load_prepared(cfg, tok).report == first.report  # and it opens for training


def test_leftover_temporary_files_are_removed(tiny_project, project_tokenizer) -> None:
    cfg: Config = tiny_project()
    tok = project_tokenizer(cfg)
    cfg = cfg.replace("model", vocab_size=tok.vocab_size)
    first = prepare_data(cfg, tok, progress=False, log=_quiet)
    leftovers = [first.cache_dir / ".train.npy.0123456789ab.tmp",
                 first.cache_dir / ".skipped.jsonl.ba9876543210.tmp"]
    for path in leftovers:
        path.write_bytes(b"x" * 1000)  # what a killed preparation leaves

    said: list[str] = []
    prepare_data(cfg, tok, progress=False, log=said.append)
    assert not [p for p in leftovers if p.exists()]
    assert any("removed 2 temporary file(s)" in line for line in said), said
