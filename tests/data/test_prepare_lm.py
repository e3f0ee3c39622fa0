"""Preparing LM data: the cache layout, the split, meta.json, freshness, bad lines."""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pytest

from llmkit.data import load_prepared, prepare_data, stale_reason
from llmkit.data import sources as sources_mod
from llmkit.errors import DataError, VocabMismatchError
from llmkit.tokenizer import EOS_ID


def quiet(msg: str) -> None:
    pass


def documents(tok, ids: np.ndarray) -> list[str]:
    """Decode a flat id array back into its documents (split at EOS)."""
    ends = np.flatnonzero(np.asarray(ids) == EOS_ID)
    assert len(ids) == 0 or ends[-1] == len(ids) - 1, "the ids must end with EOS"
    out, start = [], 0
    for end in ends:
        out.append(tok.decode(ids[start:end]))
        start = end + 1
    return out


def test_documents_joined_with_eos_in_uint16(tiny_project, project_tokenizer):
    cfg = tiny_project(files={"data/train.txt": "ab\ncd\n\n\n\nef\n",
                              "data/val.txt": "gh\n"},
                       config={"data": {"train": ["data/train.txt"], "val": ["data/val.txt"]}})
    tok = project_tokenizer(cfg)
    prepared = prepare_data(cfg, tok, progress=False, log=quiet)

    train = np.load(prepared.train, mmap_mode="r")
    val = np.load(prepared.val, mmap_mode="r")
    assert train.dtype == np.uint16 and val.dtype == np.uint16
    expected = tok.encode("ab\ncd") + [EOS_ID] + tok.encode("ef") + [EOS_ID]
    assert train.tolist() == expected
    assert val.tolist() == tok.encode("gh") + [EOS_ID]


def test_split_is_by_document_and_deterministic(tiny_project, project_tokenizer,
                                                 make_lm_text):
    text = make_lm_text(n_docs=60, seed=3)
    all_docs = text.strip().split("\n\n")
    assert len(set(all_docs)) == len(all_docs)
    cfg = tiny_project(files={"data/train.txt": text})
    tok = project_tokenizer(cfg)
    prepared = prepare_data(cfg, tok, progress=False, log=quiet)
    train_docs = documents(tok, np.load(prepared.train))
    val_docs = documents(tok, np.load(prepared.val))

    assert sorted(train_docs + val_docs) == sorted(all_docs)  # every document, once
    assert not set(train_docs) & set(val_docs)
    assert 0 < len(val_docs) < len(train_docs)
    report = prepared.report
    assert (report.documents_train, report.documents_val) == (len(train_docs), len(val_docs))

    again = prepare_data(cfg, tok, force=True, progress=False, log=quiet)
    assert documents(tok, np.load(again.val)) == val_docs

    other = tiny_project(files={"data/train.txt": text}, name="other",
                         config={"project": {"seed": 7}})
    reseeded = prepare_data(other, project_tokenizer(other), progress=False, log=quiet)
    assert documents(tok, np.load(reseeded.val)) != val_docs  # the seed keys the split


def test_long_paragraph_read_in_pieces_stays_one_document(tiny_project, project_tokenizer,
                                                          make_lm_text, monkeypatch):
    monkeypatch.setattr(sources_mod, "MAX_PIECE_CHARS", 12)
    text = make_lm_text(n_docs=30, seed=5)
    cfg = tiny_project(files={"data/train.txt": text})
    tok = project_tokenizer(cfg)
    prepared = prepare_data(cfg, tok, progress=False, log=quiet)
    got = documents(tok, np.load(prepared.train)) + documents(tok, np.load(prepared.val))
    assert sorted(got) == sorted(text.strip().split("\n\n"))


def test_meta_json_records_what_shaped_the_cache(tiny_project, project_tokenizer):
    cfg = tiny_project()
    tok = project_tokenizer(cfg)
    prepared = prepare_data(cfg, tok, progress=False, log=quiet)
    meta = json.loads((prepared.cache_dir / "meta.json").read_text())

    assert meta["task"] == "lm" and meta["dtype"] == "uint16"
    assert meta["tokenizer"] == {"hash": tok.hash, "vocab_size": tok.vocab_size, "kind": "char"}
    assert meta["config"]["data.val_fraction"] == 0.2
    assert meta["config"]["project.seed"] == 1337
    [src] = meta["sources"]
    data = cfg.path("data/train.txt").read_bytes()
    assert src["name"] == "data/train.txt" and src["size"] == len(data)
    assert src["sha256"] == hashlib.sha256(data).hexdigest()
    report = meta["report"]  # one record of the counts (no second copy in meta.json)
    assert "counts" not in meta
    assert report["tokens_train"] == len(np.load(prepared.train))
    docs = data.decode().strip("\n").split("\n\n")
    assert report["bytes_train"] + report["bytes_val"] == sum(len(d) for d in docs)
    # Nothing half-written is left behind.
    assert sorted(p.name for p in prepared.cache_dir.iterdir()) == [
        "meta.json", "skipped.jsonl", "train.npy", "val.npy"]


def test_fresh_cache_is_reused(tiny_project, project_tokenizer):
    cfg = tiny_project()
    tok = project_tokenizer(cfg)
    prepare_data(cfg, tok, progress=False, log=quiet)
    meta = cfg.path("data/.cache/meta.json")
    before = meta.stat().st_mtime_ns

    assert stale_reason(cfg, tok) is None
    again = prepare_data(cfg, tok, progress=False, log=quiet)
    assert not again.rebuilt and meta.stat().st_mtime_ns == before
    os.utime(cfg.path("data/train.txt"))  # touched, same content: still fresh
    assert stale_reason(cfg, tok) is None


def test_fresh_check_finds_the_sources_once(tiny_project, project_tokenizer, monkeypatch):
    # Finding the sources walks the folders and opens every file: prepare does it once and
    # hands the list to stale_reason.
    from llmkit.data import cache as cache_mod
    cfg = tiny_project()
    tok = project_tokenizer(cfg)
    prepare_data(cfg, tok, progress=False, log=quiet)
    calls = []
    resolve = cache_mod.resolve_sources
    monkeypatch.setattr(cache_mod, "resolve_sources",
                        lambda *a: calls.append(a) or resolve(*a))
    assert not prepare_data(cfg, tok, progress=False, log=quiet).rebuilt
    assert len(calls) == 1


def test_stale_reasons(tiny_project, project_tokenizer):
    cfg = tiny_project()
    tok = project_tokenizer(cfg)
    assert stale_reason(cfg, tok) == "no cache yet"
    prepare_data(cfg, tok, progress=False, log=quiet)

    cfg.path("data/extra.txt").write_text("zz qq\n")
    bigger = project_tokenizer(cfg)  # trained on more characters: a different tokenizer
    assert stale_reason(cfg, bigger).startswith(f"tokenizer changed (hash {tok.hash[:12]} -> ")
    cfg.path("data/extra.txt").unlink()

    assert stale_reason(cfg.replace("data", val_fraction=0.3), tok) == (
        "data.val_fraction changed 0.2 -> 0.3")

    train = cfg.path("data/train.txt")
    train.write_text(train.read_text().replace("king", "kong", 1))  # same size
    assert stale_reason(cfg, tok) == "data/train.txt changed (same size, different content)"
    train.write_text(train.read_text() + "\nmore text\n")
    assert stale_reason(cfg, tok).startswith("data/train.txt changed (size ")
    rebuilt = prepare_data(cfg, tok, progress=False, log=quiet)
    assert rebuilt.rebuilt and stale_reason(cfg, tok) is None

    cfg.path("data/train2.txt").write_text("new words\n")
    assert stale_reason(cfg, tok) == "data/train2.txt is new"


def test_changed_tokenizer_rebuilds_and_old_cache_is_refused(tiny_project, project_tokenizer):
    cfg = tiny_project()
    tok = project_tokenizer(cfg)
    prepare_data(cfg, tok, progress=False, log=quiet)
    cfg.path("data/extra.txt").write_text("xyz\n")
    new_tok = project_tokenizer(cfg)
    cfg.path("data/extra.txt").unlink()

    with pytest.raises(VocabMismatchError, match=rf"{tok.vocab_size} tokens .*"
                       rf"{new_tok.vocab_size} tokens .*`llmkit prepare`"):
        load_prepared(cfg, new_tok)
    logged: list[str] = []
    again = prepare_data(cfg, new_tok, progress=False, log=logged.append)
    assert again.rebuilt and "tokenizer changed" in logged[0]
    assert again.meta["tokenizer"]["vocab_size"] == new_tok.vocab_size
    load_prepared(cfg, new_tok)


def test_too_few_documents_for_validation(tiny_project, project_tokenizer):
    cfg = tiny_project(files={"data/train.txt": "one single paragraph\nof two lines\n"})
    tok = project_tokenizer(cfg)
    with pytest.raises(DataError, match=r"1 document, too few .* data\.val"):
        prepare_data(cfg, tok, progress=False, log=quiet)
    with pytest.raises(DataError, match=r"data\.val_fraction is 0 .* data\.val"):
        prepare_data(cfg.replace("data", val_fraction=0.0), tok, progress=False, log=quiet)


def test_hash_split_never_leaves_val_empty(tiny_project, project_tokenizer):
    cfg = tiny_project(files={"data/train.txt": "first doc\n\nsecond doc\n\nthird doc\n"},
                       config={"data": {"val_fraction": 0.001}})
    tok = project_tokenizer(cfg)
    logged: list[str] = []
    prepared = prepare_data(cfg, tok, progress=False, log=logged.append)
    assert (prepared.report.documents_train, prepared.report.documents_val) == (2, 1)
    assert any("none of the 3 documents fell in the validation split" in m for m in logged)


def test_jsonl_bad_lines_counted_and_listed(tiny_project, project_tokenizer):
    lines = [
        json.dumps({"text": "good one"}),
        "{not json",
        json.dumps({"body": "wrong field"}),
        "",  # blank lines are not data
        json.dumps({"text": 5}),
        json.dumps({"text": "good two"}),
        json.dumps({"text": "   "}),
        json.dumps({"text": "good three"}),
    ]
    cfg = tiny_project(files={"data/train.jsonl": "\n".join(lines) + "\n",
                              "data/val.jsonl": json.dumps({"text": "valid"}) + "\n"},
                       config={"data": {"train": ["data/train.jsonl"],
                                        "val": ["data/val.jsonl"]}})
    tok = project_tokenizer(cfg)
    logged: list[str] = []
    prepared = prepare_data(cfg, tok, progress=False, log=logged.append)

    assert prepared.report.documents_train == 3
    assert prepared.report.skipped == {
        "invalid JSON": 1, "missing text": 1, "text not a string": 1, "empty text": 1}
    skipped = [json.loads(x) for x in (prepared.cache_dir / "skipped.jsonl").open()]
    assert [(s["source"], s["kind"]) for s in skipped] == [
        ("data/train.jsonl:2", "invalid JSON"), ("data/train.jsonl:3", "missing text"),
        ("data/train.jsonl:5", "text not a string"), ("data/train.jsonl:7", "empty text")]
    assert "'body'" in skipped[1]["reason"]
    assert any(m.startswith("  data/train.jsonl:2: invalid JSON") for m in logged)


def test_invalid_utf8_line_is_skipped_with_its_line(tiny_project, project_tokenizer):
    cfg = tiny_project(files={"data/val.txt": "valid text\n"},
                       config={"data": {"train": ["data/train.txt"], "val": ["data/val.txt"]}})
    cfg.path("data/train.txt").write_text("fine line\n\nother line\n")
    tok = project_tokenizer(cfg)
    with open(cfg.path("data/train.txt"), "ab") as fh:
        fh.write(b"\nbad \xff byte\n")
    prepared = prepare_data(cfg, tok, progress=False, log=quiet)
    assert prepared.report.skipped == {"not UTF-8": 1}
    [bad] = [json.loads(x) for x in (prepared.cache_dir / "skipped.jsonl").open()]
    assert bad["source"] == "data/train.txt:5" and "0xff at column 5" in bad["reason"]


def test_file_errors_name_the_key(tiny_project, project_tokenizer):
    cfg = tiny_project()
    tok = project_tokenizer(cfg)
    with pytest.raises(DataError, match=r"data\.train: 'nope/\*\.txt' matches no file"):
        prepare_data(cfg.replace("data", train=["nope/*.txt"]), tok, log=quiet)
    both = cfg.replace("data", val=["data/train.txt"])
    with pytest.raises(DataError, match=r"data/train\.txt matched by both data\.train and "):
        prepare_data(both, tok, log=quiet)
    with pytest.raises(DataError, match=r"no prepared data in data/\.cache; run `llmkit prep"):
        load_prepared(cfg, tok)


def test_progress_off_is_silent(tiny_project, project_tokenizer, capsys):
    cfg = tiny_project()
    tok = project_tokenizer(cfg)
    prepare_data(cfg, tok, progress=False, log=quiet)
    assert capsys.readouterr().err == ""
