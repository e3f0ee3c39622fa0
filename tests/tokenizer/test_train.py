from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import random
import tracemalloc
from pathlib import Path

import pytest
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import models

from llmkit.errors import TokenIdError, TokenizerError
from llmkit.tokenizer import UNK_ID, Tokenizer, train_tokenizer

CORPUS = (
    "Hello world, the world is big.\n"
    "café naïve e\u0301cole 中文字符 🙂🙂 done\n"
    "  leading spaces and  double  spaces  \n"
    "\ttabs\tand\r\nwindows lines\n"
) * 8
UNICODE = "Ωμέγα ∑ 🚀 café e\u0301 中文 <eos> \n\t  end  "


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8", newline="")
    return path


def _train(files: list[Path], out: Path, kind: str = "bpe", **kw: object) -> Tokenizer:
    return train_tokenizer(files, out, kind=kind, vocab_size=32000, show_progress=False, **kw)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write(tmp_path_factory.mktemp("data") / "corpus.txt", CORPUS)


@pytest.fixture(scope="module")
def bpe(corpus: Path) -> Tokenizer:
    return _train([corpus], corpus.parent / "bpe" / "tokenizer.json")


@pytest.fixture(scope="module")
def char(corpus: Path) -> Tokenizer:
    return _train([corpus], corpus.parent / "char.json", kind="char")


def test_real_vocab_size_is_read_back_not_assumed(bpe: Tokenizer) -> None:
    saved = json.loads(bpe.path.read_text(encoding="utf-8"))
    assert 259 < bpe.vocab_size < 1000  # asked 32000, the tiny corpus gives far fewer
    assert bpe.vocab_size == len(saved["model"]["vocab"])
    assert max(bpe.encode(CORPUS + UNICODE)) < bpe.vocab_size


def test_special_ids_are_fixed(bpe: Tokenizer, char: Tokenizer) -> None:
    for tok in (bpe, char):
        assert (tok.pad_id, tok.bos_id, tok.eos_id) == (0, 1, 2)
        assert (tok.pad_token, tok.bos_token, tok.eos_token) == ("<pad>", "<bos>", "<eos>")
    assert (bpe.unk_id, char.unk_id) == (None, UNK_ID)


def test_special_strings_come_from_the_caller(corpus: Path, tmp_path: Path) -> None:
    tok = _train([corpus], tmp_path / "t.json", bos="<s>", eos="</s>", pad="[PAD]")
    assert (tok.pad_token, tok.bos_token, tok.eos_token) == ("[PAD]", "<s>", "</s>")


def test_kind_is_derived_from_the_saved_file(bpe: Tokenizer, char: Tokenizer) -> None:
    assert Tokenizer.load(bpe.path).kind == "bpe"
    assert Tokenizer.load(char.path).kind == "char"
    assert sorted(p.name for p in bpe.path.parent.iterdir()) == ["tokenizer.json"]  # no sidecar


def test_encode_adds_no_specials_and_special_strings_are_plain_text(bpe: Tokenizer) -> None:
    ids = bpe.encode("<bos>Hello<eos>")
    assert not {0, 1, 2} & set(ids)
    assert bpe.decode(ids) == "<bos>Hello<eos>"
    restored = pickle.loads(pickle.dumps(bpe))  # DataLoader workers get pickled copies
    assert restored.encode("<eos>") == bpe.encode("<eos>")


def test_bpe_round_trips_any_unicode(bpe: Tokenizer) -> None:
    assert bpe.decode(bpe.encode(UNICODE)) == UNICODE
    assert bpe.decode(bpe.encode(CORPUS)) == CORPUS
    assert bpe.encode_batch([UNICODE, "", "x"]) == [bpe.encode(UNICODE), [], bpe.encode("x")]
    assert bpe.encode_offsets_batch([UNICODE]) == [bpe.encode_offsets(UNICODE)]


def test_decode_skips_specials_and_refuses_unknown_ids(bpe: Tokenizer) -> None:
    ids = bpe.encode("Hello")
    assert bpe.decode([bpe.bos_id, *ids, bpe.eos_id, bpe.pad_id]) == "Hello"
    with pytest.raises(TokenIdError, match=rf"{bpe.vocab_size + 5}.*Tokenizer.decode"):
        bpe.decode([*ids, bpe.vocab_size + 5])


def test_char_vocab_is_exactly_the_characters_of_the_data(char: Tokenizer) -> None:
    assert char.vocab_size == 4 + len(set(CORPUS))  # pad, bos, eos, <unk>, characters
    assert char.encode("naïve") == [char.encode(c)[0] for c in "naïve"]
    assert char.decode(char.encode(CORPUS)) == CORPUS


def test_char_unknown_characters(char: Tokenizer) -> None:
    ids = char.encode("wQ🚀")
    assert ids[1:] == [UNK_ID, UNK_ID]
    assert char.decode(ids) == "w\ufffd\ufffd"


def test_char_ignores_vocab_size(corpus: Path, tmp_path: Path) -> None:
    tok = train_tokenizer([corpus], tmp_path / "c.json", kind="char", vocab_size=5)
    assert tok.vocab_size == 4 + len(set(CORPUS))


def test_bpe_vocab_size_below_bytes_is_refused(corpus: Path, tmp_path: Path) -> None:
    with pytest.raises(TokenizerError, match=r"vocab_size 100 .* at least 259"):
        train_tokenizer([corpus], tmp_path / "t.json", kind="bpe", vocab_size=100)


def test_jsonl_uses_the_text_field_and_skips_bad_lines(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    lines = [
        json.dumps({"body": "xyz", "text": "QQQ"}),
        "{not json",
        "",
        json.dumps({"text": "no body"}),
        json.dumps(["body"]),
        json.dumps({"body": "zzz yx"}),
    ]
    data = _write(tmp_path / "d.jsonl", "\n".join(lines) + "\n")
    with caplog.at_level(logging.WARNING, logger="llmkit.tokenizer"):
        tok = _train([data], tmp_path / "t.json", kind="char", text_field="body")
    assert tok.vocab_size == 4 + len(set("xyz "))
    assert tok.encode("Q") == [UNK_ID]
    assert "3 line(s) of" in caplog.text and "d.jsonl" in caplog.text
    assert "first at line 2" in caplog.text


def test_jsonl_with_no_usable_line_names_file_and_field(tmp_path: Path) -> None:
    data = _write(tmp_path / "d.jsonl", json.dumps({"content": "hi"}) + "\n")
    with pytest.raises(TokenizerError, match=r"no text .*d\.jsonl.*1 line\(s\).*'text'"):
        _train([data], tmp_path / "t.json")


def test_empty_data_names_the_files(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.txt", "")
    b = _write(tmp_path / "b.txt", "  \n\n")
    for kind in ("bpe", "char"):
        with pytest.raises(TokenizerError, match=r"no text .*a\.txt, .*b\.txt"):
            _train([a, b], tmp_path / "t.json", kind=kind)
    assert not (tmp_path / "t.json").exists()


def test_missing_and_non_utf8_files(tmp_path: Path) -> None:
    with pytest.raises(TokenizerError, match=r"not found: .*nope\.txt"):
        _train([tmp_path / "nope.txt"], tmp_path / "t.json")
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes(b"ok\ncaf\xe9\n")
    with pytest.raises(TokenizerError, match=r"latin1\.txt:2 is not UTF-8"):  # the line
        _train([latin1], tmp_path / "t.json")


def test_special_token_that_is_a_learned_token_is_refused(corpus: Path, tmp_path: Path) -> None:
    with pytest.raises(TokenizerError, match="'Hello' also occur"):
        _train([corpus], tmp_path / "t.json", bos="Hello")
    with pytest.raises(TokenizerError, match="'a' also occur"):
        _train([corpus], tmp_path / "t.json", kind="char", eos="a")


def test_streams_large_files_with_bounded_memory(tmp_path: Path) -> None:
    rng = random.Random(0)
    words = ["alpha", "beta", "über", "中文", "🙂", "x"]
    lines = "\n".join(" ".join(rng.choices(words, k=12)) for _ in range(2000))
    # ~0.75 MB of lines, then the same text as one 0.75 MB line: neither may be read whole.
    big = _write(tmp_path / "big.txt", (lines + "\n") * 6 + lines.replace("\n", " ") * 6)
    size = big.stat().st_size
    tracemalloc.start()
    try:
        tok = train_tokenizer(
            [big], tmp_path / "t.json", kind="bpe", vocab_size=300, show_progress=False
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert 259 < tok.vocab_size <= 300
    assert peak < size / 4, f"peak Python memory {peak} for a file of {size} bytes"


def test_failed_save_leaves_old_tokenizer_and_no_temp(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "tok" / "tokenizer.json"

    def crash(src: object, dst: object) -> None:
        raise OSError("simulated crash")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        _train([corpus], out)
    assert list(out.parent.iterdir()) == []
    monkeypatch.undo()
    old = _train([corpus], out, kind="char").path.read_bytes()
    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        _train([corpus], out)
    assert out.read_bytes() == old
    assert list(out.parent.iterdir()) == [out]


def test_load_errors_name_the_path_and_the_fix(tmp_path: Path) -> None:
    missing = tmp_path / "missing.json"
    with pytest.raises(
        TokenizerError, match=r"missing\.json does not exist; run `llmkit tokenizer`"
    ):
        Tokenizer.load(missing)
    corrupt = _write(tmp_path / "corrupt.json", '{"version": "1.0", "model": ')
    with pytest.raises(TokenizerError, match=r"corrupt\.json is not a valid .*llmkit tokenizer"):
        Tokenizer.load(corrupt)
    foreign = tmp_path / "foreign.json"
    HFTokenizer(models.WordLevel({"a": 0, "b": 1, "c": 2, "<unk>": 3}, "<unk>")).save(str(foreign))
    with pytest.raises(TokenizerError, match=r"foreign\.json is not an llmkit tokenizer: id 0"):
        Tokenizer.load(foreign)


def test_hash_is_sha256_of_the_file_and_follows_changes(
    corpus: Path, bpe: Tokenizer, char: Tokenizer, tmp_path: Path
) -> None:
    assert bpe.hash == hashlib.sha256(bpe.path.read_bytes()).hexdigest()
    assert bpe.hash != char.hash
    same = _train([corpus], tmp_path / "again.json", kind="char")
    assert same.hash == char.hash  # the same data gives the same tokenizer
    other = _train(
        [_write(tmp_path / "o.txt", CORPUS + "Zebra\n")], tmp_path / "o.json", kind="char"
    )
    assert other.hash != char.hash


@pytest.mark.parametrize("suffix", [".jsonl", ".ndjson"])
def test_json_lines_train_on_the_text_field_alone_whatever_the_suffix(tmp_path: Path,
                                                                      suffix: str) -> None:
    # `prepare` reads .jsonl and .ndjson as JSON Lines and encodes only data.text_field;
    # the tokenizer must learn from the same text, not from the JSON around it.
    rows = [{"body": f"abc {i % 3}", "id": "ZZZ", "meta": {"q": 1}} for i in range(50)]
    data = tmp_path / f"train{suffix}"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    tok = train_tokenizer([data], tmp_path / "tok.json", kind="char", vocab_size=256,
                          text_field="body", show_progress=False)
    vocab = HFTokenizer.from_file(str(tok.path)).get_vocab()
    learned = set(vocab) - {"<pad>", "<bos>", "<eos>", "<unk>"}
    assert learned == set("abc 012")  # no '{', '"', ':', 'Z', 'i', 'd', 'm', 'q'
