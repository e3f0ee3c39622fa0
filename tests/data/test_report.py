"""The data report: vocabulary use and the val/train overlap estimate on hand-made data."""

from __future__ import annotations

import numpy as np

from llmkit.data import prepare_data
from llmkit.data.npy import NpyFile
from llmkit.data.report import WINDOW, DataReport, vocab_counts, window_overlap
from llmkit.models import GPTConfig
from llmkit.preflight import preflight_findings, preflight_warnings

EOS = 2


def docs_to_ids(docs: list[np.ndarray]) -> np.ndarray:
    return np.concatenate([np.append(d, EOS) for d in docs]).astype(np.uint16)


def random_docs(rng: np.random.Generator, n: int, length: int = 100) -> list[np.ndarray]:
    return [rng.integers(3, 500, size=length) for _ in range(n)]


def test_overlap_of_identical_disjoint_and_half_shared_data():
    rng = np.random.default_rng(0)
    train = random_docs(rng, 50)
    other = random_docs(rng, 50)
    share, checked, sample = window_overlap(docs_to_ids(train), docs_to_ids(train), EOS)
    assert share == 1.0 and checked == 50 * (100 - WINDOW + 1) and sample == 1
    share, _, _ = window_overlap(docs_to_ids(train), docs_to_ids(other), EOS)
    assert share == 0.0
    share, _, _ = window_overlap(docs_to_ids(train), docs_to_ids(train[:25] + other[:25]), EOS)
    assert share == 0.5


def test_windows_across_document_boundaries_do_not_count():
    rng = np.random.default_rng(1)
    docs = random_docs(rng, 20, length=WINDOW - 1)  # every window would hold an EOS
    share, checked, _ = window_overlap(docs_to_ids(docs), docs_to_ids(docs), EOS)
    assert share is None and checked == 0


def test_sampled_overlap_stays_close_and_bounded():
    rng = np.random.default_rng(2)
    train = random_docs(rng, 400)
    val = train[:100] + random_docs(rng, 300)  # a quarter shared
    share, checked, sample = window_overlap(docs_to_ids(train), docs_to_ids(val), EOS,
                                            max_train_windows=4000)
    assert sample == 11  # 40,400 train tokens / 4,000
    assert abs(share - 0.25) < 0.05
    assert checked < 400 * 100 / 5


def test_vocab_counts_in_chunks_match_bincount():
    ids = np.random.default_rng(3).integers(0, 300, size=10_000).astype(np.uint16)
    counts = vocab_counts(ids, 400, chunk=777)
    assert counts.tolist() == np.bincount(ids, minlength=400).tolist()


def test_report_format_and_warnings(tiny_project):
    report = DataReport(task="lm", documents_train=10, documents_val=2, tokens_train=1010,
                        tokens_val=200, bytes_train=4000, bytes_val=800, vocab_size=1000,
                        vocab_used=120, overlap=0.4, overlap_windows=50)
    text = report.format()
    assert "train 10   val 2" in text
    assert "bytes per token  4.00" in text  # 4000 bytes / (1010 tokens - 10 EOS)
    assert "120 of 1,000 ids occur in train (12.0%)" in text
    assert "40.0% of val 32-token windows also occur in train (50 checked)" in text
    # The report prints numbers; the verdicts on them are findings, made in one place.
    assert "warning" not in text
    cfg = tiny_project(config={"tokenizer": {"kind": "bpe"}})
    gpt = GPTConfig(vocab_size=1000, n_layer=2, n_head=2, n_embd=16, block_size=32)
    findings = preflight_findings(cfg, gpt, report.to_dict())
    assert {f.code for f in findings} >= {"vocab-unused", "val-overlap"}
    lines = [f.format() for f in findings]
    assert any("tokenizer.vocab_size" in w for w in lines)
    assert any("verbatim in the training text" in w for w in lines)
    assert DataReport.from_dict(report.to_dict()) == report


def test_prepared_report_sees_val_copied_from_train(tiny_project, project_tokenizer,
                                                     make_lm_text):
    text = make_lm_text(n_docs=30, seed=4)
    cfg = tiny_project(files={"data/train.txt": text, "data/val.txt": text},
                       config={"data": {"train": ["data/train.txt"], "val": ["data/val.txt"]}})
    tok = project_tokenizer(cfg)
    logged: list[str] = []
    report = prepare_data(cfg, tok, progress=False, log=logged.append).report
    assert report.overlap == 1.0
    assert report.vocab_used == tok.vocab_size - 3  # all but PAD, BOS and UNK occur
    gpt = GPTConfig(vocab_size=tok.vocab_size, n_layer=2, n_head=2, n_embd=16, block_size=32)
    logged += preflight_warnings(cfg, gpt, report.to_dict())  # as prepare and train print
    assert any("100.0% of validation text (" in m and "also occurs verbatim" in m
               for m in logged)

    fresh = tiny_project(name="fresh", files={
        "data/train.txt": text, "data/val.txt": make_lm_text(n_docs=10, seed=99)},
        config={"data": {"train": ["data/train.txt"], "val": ["data/val.txt"]}})
    report = prepare_data(fresh, project_tokenizer(fresh), progress=False, log=print).report
    assert report.overlap is not None and report.overlap < 0.05


def test_npy_file_reads_slices_like_an_array(tmp_path):
    ids = np.arange(5000, dtype=np.uint16)
    np.save(tmp_path / "ids.npy", ids)
    f = NpyFile(tmp_path / "ids.npy")
    assert len(f) == 5000 and f.dtype == np.uint16
    assert f[10:20].tolist() == ids[10:20].tolist()
    assert f[4990:6000].tolist() == ids[4990:].tolist()
    assert vocab_counts(f, 5000, chunk=999).tolist() == [1] * 5000
