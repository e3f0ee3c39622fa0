"""SpanModule's validation path: model token spans become CHARACTER spans through each
example's offsets (never by ± 1), and the logged metrics are `score_spans` of those.

The trunk is replaced by an oracle that puts its start/end logits on token positions the
test chooses, so each example's prediction is known exactly. The positions are found
independently of the offset mapping under test: for the char tokenizer character c sits
at model position c + 1 (after BOS); for bpe, by decoding single tokens.
"""

from __future__ import annotations

import json

import lightning as L
import pytest
import torch
import torch.nn as nn

from llmkit.data.module import LlmkitDataModule
from llmkit.data.prepare import prepare_data
from llmkit.metrics.spans import score_spans
from llmkit.tokenizer import BOS_ID, EOS_ID
from llmkit.trainer.build import build_module
from llmkit.trainer.callbacks.samples import SpanSamples
from llmkit.vocab_sync import ensure_tokenizer

HIGH, LOW = 10.0, -10.0


class Oracle(nn.Module):
    """Stands in for SpanModel: start/end logits peak where `choices[ids]` says.

    `choices` maps an example's model ids (BOS ... EOS) to a token span with an exclusive
    end, `(0, 0)` meaning "no span"; the end logit peaks at the span's last token.
    """

    def __init__(self, choices: dict[tuple[int, ...], tuple[int, int]]) -> None:
        super().__init__()
        self.choices = choices
        self.anchor = nn.Parameter(torch.zeros(()))  # gives the module a device and dtype

    def forward(self, ids: torch.Tensor, mask: torch.Tensor):
        start = torch.full(ids.shape, LOW) + self.anchor
        end = torch.full(ids.shape, LOW) + self.anchor
        for row in range(ids.size(0)):
            ts, te = self.choices[tuple(ids[row][mask[row]].tolist())]
            start[row, ts] = HIGH
            end[row, max(te - 1, 0)] = HIGH
        lowest = torch.finfo(start.dtype).min
        return start.masked_fill(~mask, lowest), end.masked_fill(~mask, lowest)


def _jsonl(rows: list[tuple[str, list[int] | None]]) -> str:
    return "".join(json.dumps({"text": t, "span": s}) + "\n" for t, s in rows)


def _validate(cfg, choose, callbacks=()):
    """Run one real validation epoch with the oracle; return (module, metrics, examples).

    `choose(text, ids, tok)` gives the token span the oracle predicts for one example.
    """
    cfg, tok = ensure_tokenizer(cfg, log=lambda m: None, show_progress=False)
    prepare_data(cfg, tok, progress=False, log=lambda m: None)
    module = build_module(cfg, tok)
    dm = LlmkitDataModule(cfg, tok)
    dm.setup()
    choices = {}
    for i, ex in enumerate(dm.val_examples):
        (window,) = ex.windows(i, cfg.model.block_size, None)  # short texts: one window
        assert window.ids == [BOS_ID, *tok.encode(ex.text), EOS_ID]
        choices[tuple(window.ids)] = choose(ex.text, window.ids, tok)
    module.model = Oracle(choices)
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=list(callbacks))
    results = trainer.validate(module, datamodule=dm, verbose=False)
    return module, results[0], dm.val_examples


# Char tokenizer: (text, gold char span, char span the oracle predicts or None).
CHAR_CASES = [
    (r"(\x.x) y", [0, 8], (0, 8)),  # exact, starting at the first character
    (r"f ((\x.x) y) z", [3, 11], (2, 12)),  # wider by one character on each side
    (r"(\y.a) b", [0, 8], None),  # a span missed: no-span prediction
    (r"a b", None, None),  # no span, rightly
    (r"g a", None, (0, 1)),  # a span where there is none
    (r"\v.(\x.x) (g a)", [3, 15], (4, 15)),  # one character short at the start
]


@pytest.fixture
def char_project(tiny_project):
    val = _jsonl([(t, g) for t, g, _ in CHAR_CASES])
    # Different texts from validation, with every character that validation uses.
    train = _jsonl([(r"(\x.x x) a", [0, 10]), (r"\z.z", None), (r"h (\u.u) b", None),
                    (r"f (g v) y", None)] * 4)
    return tiny_project("span", files={"data/train.jsonl": train, "data/val.jsonl": val},
                        config={"data": {"train": ["data/train.jsonl"],
                                         "val": ["data/val.jsonl"]}})


def _char_choose(text, ids, tok):
    (pred,) = [p for t, _, p in CHAR_CASES if t == text]
    # The char tokenizer puts character c at model position c + 1, right after BOS.
    return (0, 0) if pred is None else (pred[0] + 1, pred[1] + 1)


def test_char_validation_converts_token_spans_to_char_spans(char_project):
    module, metrics, examples = _validate(char_project, _char_choose)

    by_text = {ex.text: i for i, ex in enumerate(examples)}
    for text, _, pred in CHAR_CASES:
        char, score = module.val_predictions[by_text[text]]
        assert char == (pred or (0, 0)), text  # no-span predictions are (0, 0)
        assert (score > 0) == (pred is not None)
    # The shown predictions read back as the intended text, not shifted by BOS.
    char, _ = module.val_predictions[by_text[r"f ((\x.x) y) z"]]
    assert r"f ((\x.x) y) z"[slice(*char)] == r"((\x.x) y)"


def test_char_validation_logs_score_spans_of_the_char_spans(char_project):
    module, metrics, examples = _validate(char_project, _char_choose)

    preds = [p or (0, 0) for _, _, p in CHAR_CASES]
    golds = [tuple(g) if g else (0, 0) for _, g, _ in CHAR_CASES]
    want = score_spans(preds, golds)
    assert metrics["val/span_iou"] == pytest.approx(want.iou)
    assert metrics["val/exact_match"] == pytest.approx(want.exact_match)
    assert metrics["val/nospan_precision"] == pytest.approx(want.nospan_precision)
    assert metrics["val/nospan_recall"] == pytest.approx(want.nospan_recall)
    # The same numbers by hand: IoU 1, 8/10, 0, 1, 0, 11/12; exact 2 of 6; one of the two
    # predicted no-spans is right, and one of the two gold no-spans is found.
    assert metrics["val/span_iou"] == pytest.approx((1 + 0.8 + 0 + 1 + 0 + 11 / 12) / 6)
    assert metrics["val/exact_match"] == pytest.approx(2 / 6)
    assert metrics["val/nospan_precision"] == pytest.approx(0.5)
    assert metrics["val/nospan_recall"] == pytest.approx(0.5)
    assert {k for k in metrics if k.startswith("val/")} >= {"val/loss", "val/span_iou"}


def test_span_samples_mark_gold_and_predicted_characters(char_project):
    samples = SpanSamples(num_samples=len(CHAR_CASES))
    _validate(char_project, _char_choose, callbacks=[samples])

    text = samples.last_text
    assert "[[{{(\\x.x) y}}]]" in text  # identical spans nest, at the text's first char
    assert "f {{([[(\\x.x) y]])}} z" in text
    assert "[[(\\y.a) b]]" in text and "gold: [0, 8); pred: no span" in text
    assert "{{g}} a" in text
    assert "\\v.[[({{\\x.x) (g a)}}]]" in text  # pred opened later, closes first


# BPE: the tokens carry their leading space ("Ġgold"), their offsets do not.
WORDS = "the king and queen went to a river where old men sat by gold light crown".split()


@pytest.fixture
def bpe_project(tiny_project):
    lines = []
    for i in range(120):
        words = [WORDS[(i * 7 + k * 3) % len(WORDS)] for k in range(6)]
        lines.append((" ".join(words), None))
    lines += [("gold crown and gold light", None)] * 40
    val = [
        ("the king and gold crown", [13, 17]),  # "gold": one token " gold"
        ("a river of gold crown", [11, 21]),  # "gold crown": two tokens
        ("old men sat by the river", None),
        ("gold light went", [0, 4]),  # the first token has no space
    ]
    return tiny_project("span", files={"data/train.jsonl": _jsonl(lines),
                                       "data/val.jsonl": _jsonl(val)},
                        config={"data": {"train": ["data/train.jsonl"],
                                         "val": ["data/val.jsonl"]},
                                "tokenizer": {"kind": "bpe", "vocab_size": 400,
                                              "min_frequency": 2}})


def _positions_of(ids, tok, pieces):
    """Model positions of the consecutive tokens that decode to `pieces`."""
    decoded = [tok.decode([i]) for i in ids]
    for p in range(len(decoded) - len(pieces) + 1):
        if decoded[p:p + len(pieces)] == list(pieces):
            return p, p + len(pieces)
    raise AssertionError(f"no tokens {pieces} in {decoded}: the test's tokenizer changed")


def _bpe_choose(text, ids, tok):
    if text.startswith("the king"):
        return _positions_of(ids, tok, [" gold"])
    if text.startswith("a river"):
        return _positions_of(ids, tok, [" gold", " crown"])
    if text.startswith("gold light"):
        return _positions_of(ids, tok, ["gold"])
    return (0, 0)


def test_bpe_validation_leaves_the_leading_space_out_of_char_spans(bpe_project):
    module, metrics, examples = _validate(bpe_project, _bpe_choose)

    got = {ex.text: module.val_predictions[i][0] for i, ex in enumerate(examples)}
    assert got["the king and gold crown"] == (13, 17)  # "gold", not " gold" (12, 17)
    assert got["a river of gold crown"] == (11, 21)
    assert got["gold light went"] == (0, 4)
    assert got["old men sat by the river"] == (0, 0)
    # Every prediction is the gold span: all metrics are perfect, as score_spans says.
    golds = [tuple(ex.char_span) if ex.char_span else (0, 0) for ex in examples]
    want = score_spans([got[ex.text] for ex in examples], golds)
    assert want.iou == 1.0
    assert metrics["val/span_iou"] == pytest.approx(want.iou)
    assert metrics["val/exact_match"] == pytest.approx(1.0)
    assert metrics["val/nospan_precision"] == pytest.approx(1.0)
    assert metrics["val/nospan_recall"] == pytest.approx(1.0)


def test_bpe_validation_one_token_off_costs_a_whole_word(bpe_project):
    def choose(text, ids, tok):
        if text.startswith("a river"):
            return _positions_of(ids, tok, [" gold"])  # stops one token early
        return _bpe_choose(text, ids, tok)

    module, metrics, examples = _validate(bpe_project, choose)

    by_text = {ex.text: i for i, ex in enumerate(examples)}
    assert module.val_predictions[by_text["a river of gold crown"]][0] == (11, 15)
    # "gold" against "gold crown": 4 of 10 characters; the three others are exact.
    assert metrics["val/span_iou"] == pytest.approx((3 + 0.4) / 4)
    assert metrics["val/exact_match"] == pytest.approx(3 / 4)


def test_a_model_that_never_answers_shows_has_span_iou_zero_in_tensorboard(
        char_project, tmp_path, read_events):
    from lightning.pytorch.loggers import TensorBoardLogger

    logger = TensorBoardLogger(save_dir=str(tmp_path), name="never", version=0)
    cfg, tok = ensure_tokenizer(char_project, log=lambda m: None, show_progress=False)
    prepare_data(cfg, tok, progress=False, log=lambda m: None)
    module = build_module(cfg, tok)
    dm = LlmkitDataModule(cfg, tok)
    dm.setup()
    module.model = Oracle({tuple(ex.windows(i, cfg.model.block_size, None)[0].ids): (0, 0)
                           for i, ex in enumerate(dm.val_examples)})
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=logger, enable_progress_bar=False,
                        enable_model_summary=False)
    trainer.validate(module, datamodule=dm, verbose=False)
    logger.finalize("success")

    events = read_events(tmp_path / "never" / "version_0")
    scalar = {tag: events.scalars(tag)[-1][1] for tag in events.scalar_tags}
    n_nospan = sum(1 for _, gold, _ in CHAR_CASES if gold is None)
    # The overall IoU is propped up by the no-span share; the has-span metrics are not.
    assert scalar["val/span_iou"] == pytest.approx(n_nospan / len(CHAR_CASES))
    assert scalar["val/has_span_iou"] == 0.0
    assert scalar["val/has_span_exact_match"] == 0.0
    assert scalar["val/nospan_predicted"] == 1.0
    assert scalar["val/span_f1"] == pytest.approx(n_nospan / len(CHAR_CASES))
    assert module.val_counts == {"examples": len(CHAR_CASES), "windows": len(CHAR_CASES)}
