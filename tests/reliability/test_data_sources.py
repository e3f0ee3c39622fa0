"""The data as read: a symlink loop does not multiply it, a byte-order mark is not text,
a line of any length is encoded in bounded pieces, and a bad byte is reported on its own
line."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from llmkit.config import Config, load_config
from llmkit.data.prepare import prepare_data
from llmkit.errors import LlmkitError
from llmkit.tokenizer import Tokenizer


def _quiet(_: str) -> None:
    pass


def _prepare(cfg: Config, project_tokenizer, log: Callable[[str], None] = _quiet):
    tok = project_tokenizer(cfg, files=["data/train.txt"])
    cfg = cfg.replace("model", vocab_size=tok.vocab_size)
    return prepare_data(cfg, tok, progress=False, log=log), tok


@pytest.mark.parametrize("train", [["data"], ["data/**/*.txt"]])
def test_a_symlink_loop_does_not_multiply_the_data(tiny_project, project_tokenizer,
                                                   train: list[str]) -> None:
    plain = tiny_project(config={"data": {"train": train}}, name="plain")
    baseline, _ = _prepare(plain, project_tokenizer)
    n_docs = baseline.report.documents_train + baseline.report.documents_val

    cfg = tiny_project(config={"data": {"train": train}}, name="looped")
    os.symlink(".", cfg.root / "data" / "loop")  # ln -s . data/loop
    said: list[str] = []
    looped, _ = _prepare(cfg, project_tokenizer, log=said.append)
    report = looped.report
    assert report.documents_train + report.documents_val == n_docs
    assert [s["name"] for s in looped.meta["sources"]] == ["data/train.txt"]
    assert report.links and report.links[0].startswith("data/loop links to data, a folder")
    assert any(line.startswith("warning: data/loop links to data") for line in said)
    assert "data/loop links to data" in report.format()

    # Made after a first preparation: the cache stays as it is, and the link is reported.
    os.unlink(cfg.root / "data" / "loop")
    _prepare(cfg, project_tokenizer, log=said.append)
    os.symlink(".", cfg.root / "data" / "loop")
    said.clear()
    again, _ = _prepare(cfg, project_tokenizer, log=said.append)
    assert not again.rebuilt
    assert any(line.startswith("warning: data/loop links to data") for line in said)


def test_a_file_linked_twice_is_read_once(tiny_project, project_tokenizer) -> None:
    cfg = tiny_project(config={"data": {"train": ["data/*.txt"]}})
    os.symlink("train.txt", cfg.root / "data" / "again.txt")
    prepared, _ = _prepare(load_config(cfg.root), project_tokenizer)
    assert [s["name"] for s in prepared.meta["sources"]] == ["data/again.txt"]
    assert prepared.report.links == ["data/train.txt is data/again.txt again (read once)"]


def test_a_byte_order_mark_is_removed_and_counted(tiny_project, project_tokenizer) -> None:
    cfg = tiny_project()
    data = cfg.root / "data" / "train.txt"
    data.write_bytes(b"\xef\xbb\xbf" + data.read_bytes())
    prepared, tok = _prepare(cfg, project_tokenizer)
    assert "\ufeff" not in tok.decode(list(range(4, tok.vocab_size)))  # not trained on
    assert prepared.report.bom_files == 1
    assert "removed from the start of 1 file(s)" in prepared.report.format()


def test_the_tokenizer_names_the_line_with_the_bad_byte(tiny_project, project_tokenizer) -> None:
    cfg = tiny_project()
    data = cfg.root / "data" / "train.txt"
    data.write_bytes(b"".join(b"line %d of plain text\n" % i for i in range(1, 1000))
                     + b"caf\xe9 on line 1000\n" + b"more\n" * 10)
    with pytest.raises(LlmkitError, match=r"train\.txt:1000 is not UTF-8 text \(byte 0xe9"):
        project_tokenizer(cfg, files=["data/train.txt"])


def test_a_single_huge_line_reaches_the_encoder_in_bounded_pieces(
        tiny_project, project_tokenizer, monkeypatch: pytest.MonkeyPatch) -> None:
    # 3 Mi characters without a line end (a minified file, a dump on one line): the
    # encoder gets it in pieces of at most 1 Mi characters, and every character is kept.
    cfg = tiny_project(config={"data": {"val_fraction": 0.5}})
    line = ("the king and queen went to a river " * 90_000)[: 3 << 20]
    (cfg.root / "data" / "train.txt").write_text(
        "a first paragraph\n\n" + line + "\n\na last paragraph\n", encoding="utf-8")
    longest: list[int] = []
    real = Tokenizer.encode_batch

    def encode_batch(self, texts, *args, **kwargs):
        longest.append(max(len(t) for t in texts))
        return real(self, texts, *args, **kwargs)

    monkeypatch.setattr(Tokenizer, "encode_batch", encode_batch)
    prepared, _ = _prepare(cfg, project_tokenizer)
    report = prepared.report
    assert max(longest) <= 1 << 20, max(longest)
    # char tokenizer: one token per character, one EOS per document
    n_chars = len("a first paragraph") + len(line) + len("a last paragraph")
    assert report.tokens_train + report.tokens_val == n_chars + 3
    assert report.documents_train + report.documents_val == 3


def test_a_json_line_too_long_to_parse_is_skipped_and_reported(
        tiny_project, monkeypatch: pytest.MonkeyPatch) -> None:
    # A JSON line must be parsed whole; over the limit it is skipped (never held whole,
    # never dropped silently). The limit is lowered here to keep the test small.
    import json

    import llmkit.data.sources as sources

    monkeypatch.setattr(sources, "MAX_JSONL_LINE_CHARS", 5000)
    monkeypatch.setattr(sources, "MAX_LINE_BYTES", 1024)
    lines = [json.dumps({"text": f"short text number {i}"}) for i in range(20)]
    lines.insert(5, json.dumps({"text": "x" * 20_000}))
    cfg = tiny_project(files={"data/train.jsonl": "\n".join(lines) + "\n"})
    f = sources.find_files(cfg, ["data/train.jsonl"], "data.train")[0]
    items = list(sources.iter_jsonl_documents(f, "text"))
    bad = [i for i in items if isinstance(i, sources.BadLine)]
    assert [(b.source, b.kind) for b in bad] == [("data/train.jsonl:6", "line too long")]
    assert len(items) == 21 and all(len(i.text) < 100 for i in items
                                    if isinstance(i, sources.Document))


def test_a_bad_byte_held_over_from_the_last_piece_is_named(tmp_path) -> None:
    # A line is decoded in pieces; a piece may end inside what looks like a character,
    # and the byte that breaks it comes in the next piece. The error must name the byte
    # and column in the line, not in the next piece (that named the wrong byte, or failed
    # with an IndexError).
    from llmkit.data.sources import NotUtf8, utf8_pieces

    path = tmp_path / "t.txt"
    path.write_bytes(b"ab\xe9cd\n")  # Latin-1 "abécd": \xe9 ends the first 3-byte piece
    assert list(utf8_pieces(path, 3)) == [
        (1, "ab", False), (1, NotUtf8(0xE9, 2, "invalid continuation byte"), True)]
    path.write_bytes("ab\U0001f600".encode() + b"\x80\n")  # an emoji cut by the piece end,
    assert list(utf8_pieces(path, 5)) == [  # then a stray continuation byte
        (1, "ab", False), (1, NotUtf8(0x80, 6, "invalid start byte"), True)]
