"""Preparing span data: every bad line reported with its line and reason, nothing else lost;
character spans converted to token spans through the tokenizer's offsets."""

from __future__ import annotations

import json
import re

import pytest

from llmkit.data import prepare_data
from llmkit.data.spans import SpanExample
from llmkit.errors import DataError
from llmkit.models import GPTConfig
from llmkit.preflight import preflight_warnings
from llmkit.tokenizer import BOS_ID, EOS_ID, token_span_to_char_span


def quiet(msg: str) -> None:
    pass


def read_examples(path) -> list[SpanExample]:
    return [SpanExample.from_json(line) for line in open(path, encoding="utf-8")]


def span_project(tiny_project, train_lines, val_lines=None, **config):
    val_lines = val_lines or [json.dumps({"text": "a cat sat", "span": [2, 5]})]
    return tiny_project(
        "span",
        files={"data/train.jsonl": "\n".join(train_lines) + "\n",
               "data/val.jsonl": "\n".join(val_lines) + "\n"},
        config={"data": {"train": ["data/train.jsonl"], "val": ["data/val.jsonl"]}, **config},
    )


GOOD = [
    {"text": "the cat sat", "span": [4, 7]},
    {"text": "no answer here", "span": None},
    {"text": "x y", "span": [0, 3], "trace_id": "t1", "step": 0, "steps_total": 2},
    {"text": "y", "span": None, "trace_id": "t1", "step": 1, "steps_total": 2},
]
# (line, expected kind, a piece of the expected reason)
BAD = [
    ("{oops", "invalid JSON", "invalid JSON"),
    ("[1, 2]", "not an object", "found list"),
    (json.dumps({"txt": "a", "span": None}), "missing text", "no 'text' field"),
    (json.dumps({"text": 3, "span": None}), "text not a string", "is int, not a string"),
    (json.dumps({"text": "", "span": None}), "empty text", "is empty"),
    (json.dumps({"text": "abc"}), "missing span", 'no "span" field'),
    (json.dumps({"text": "abc", "span": "0:2"}), "bad span", 'found "0:2"'),
    (json.dumps({"text": "abc", "span": [0, 1.5]}), "bad span", "two integers"),
    (json.dumps({"text": "abc", "span": [True, 2]}), "bad span", "two integers"),
    (json.dumps({"text": "abc", "span": [1, 4]}), "span out of bounds",
     "span [1, 4] is outside the text of 3 characters"),
    (json.dumps({"text": "abc", "span": [-1, 2]}), "span out of bounds", "outside"),
    (json.dumps({"text": "abc", "span": [2, 2]}), "empty span", "use null for no span"),
    (json.dumps({"text": "abc", "span": [2, 1]}), "empty span", "start must be < end"),
    (json.dumps({"question": "a" * 30, "context": "abc", "span": [0, 1]}),
     "question too long", "the question is 30 tokens: with <bos> and two <eos> it leaves no "
                          "room for context in model.block_size 32"),
    (json.dumps({"question": "a", "text": "abc", "span": [0, 1]}),
     "question without context", "'question' needs a 'context' field"),
    (json.dumps({"context": "abc", "text": "abc", "span": [0, 1]}),
     "text and context", "has both 'text' and 'context'"),
    (json.dumps({"text": "abc", "span": [0, 1], "group": [1]}), "bad group",
     '"group" must be a string or an integer'),
    (json.dumps({"text": "a b", "span": None, "trace_id": "t2", "step": 0, "steps_total": 3}),
     "no span before the final step",
     'span is null on step 0 of trace "t2" with 3 steps: only the final step (step 2)'),
    (json.dumps({"text": "a b", "span": [0, 1], "step": 0}), "bad trace fields",
     'only "step"'),
    (json.dumps({"text": "a b", "span": [0, 1], "step": 3, "steps_total": 3}),
     "bad trace fields", "integer in [0, steps_total)"),
]


def test_every_bad_line_reported_and_every_good_line_kept(tiny_project, project_tokenizer):
    lines: list[str] = []
    good_lines, bad_lines = [], {}
    for i in range(max(len(GOOD), len(BAD))):
        if i < len(GOOD):
            lines.append(json.dumps(GOOD[i]))
            good_lines.append(len(lines))
        if i < len(BAD):
            lines.append(BAD[i][0])
            bad_lines[len(lines)] = BAD[i]
    cfg = span_project(tiny_project, lines)
    tok = project_tokenizer(cfg)
    with open(cfg.path("data/train.jsonl"), "ab") as fh:  # after training the tokenizer
        fh.write(b'{"text": "caf\xe9", "span": null}\n')
    bad_lines[len(lines) + 1] = (None, "not UTF-8", "not valid UTF-8")
    logged: list[str] = []
    prepared = prepare_data(cfg, tok, progress=False, log=logged.append)

    kept = read_examples(prepared.train)
    assert [ex.source for ex in kept] == [f"data/train.jsonl:{n}" for n in good_lines]
    skipped = [json.loads(x) for x in open(prepared.cache_dir / "skipped.jsonl")]
    assert sorted(int(s["source"].rsplit(":", 1)[1]) for s in skipped) == sorted(bad_lines)
    for s in skipped:
        _, kind, reason = bad_lines[int(s["source"].rsplit(":", 1)[1])]
        assert s["kind"] == kind, s
        assert reason in s["reason"], s
    report = prepared.report
    assert (report.documents_train, report.documents_val) == (len(GOOD), 1)  # examples
    assert sum(report.skipped.values()) == len(bad_lines) == len(BAD) + 1
    # The console shows the first 10, in line order, and says where the rest are.
    shown = [m.strip() for m in logged if m.startswith("  data/train.jsonl:")]
    assert len(shown) == 10
    assert [int(m.split(":")[1]) for m in shown] == sorted(bad_lines)[:10]
    assert any(f"skipped {len(bad_lines)} lines" in m and "skipped.jsonl" in m for m in logged)


def test_no_surviving_example_is_an_error(tiny_project, project_tokenizer):
    cfg = span_project(tiny_project, ["{bad", json.dumps({"text": "abc", "span": [3, 9]})])
    tok = project_tokenizer(cfg, files=["data/val.jsonl"])
    cfg2 = cfg.replace("data", val=[])
    logged: list[str] = []
    with pytest.raises(DataError, match=r"no usable example in the data \(2 lines were skip"):
        prepare_data(cfg2, tok, progress=False, log=logged.append)
    assert logged[-2:] == ["  data/train.jsonl:1: invalid JSON (Expecting property name "
                           "enclosed in double quotes at column 2)",
                           "  data/train.jsonl:2: span [3, 9] is outside the text of 3 "
                           "characters (0-based character offsets, end exclusive)"]
    assert not cfg.path("data/.cache/skipped.jsonl").exists()
    with pytest.raises(DataError, match=r"data\.train holds no usable example \(2 lines"):
        prepare_data(cfg, tok, progress=False, log=quiet)


def test_char_spans_become_token_spans_through_offsets(tiny_project, project_tokenizer):
    texts = [("abc def", [4, 7]), ("hello world", [0, 5]), ("xy", [1, 2]), ("plain", None)]
    lines = [json.dumps({"text": t, "span": s}) for t, s in texts]
    cfg = span_project(tiny_project, lines)
    tok = project_tokenizer(cfg)
    prepared = prepare_data(cfg, tok, progress=False, log=quiet)
    examples = read_examples(prepared.train)
    # char tokenizer: context token i is character i
    assert [e.token_span for e in examples] == [(4, 7), (0, 5), (1, 2), None]
    for i, ex in enumerate(examples):
        n = len(ex.text)
        assert len(ex.offsets) == len(ex.ids) == n
        (w,) = ex.windows(i, cfg.model.block_size, None)  # short: one window
        assert w.ids == [BOS_ID, *ex.ids, EOS_ID] and w.context == (1, n + 1)
        assert w.offsets[0] == (0, 0) and w.offsets[-1] == (n, n)
        if ex.char_span is None:
            assert w.span == (0, 0)
        else:
            s, e = ex.char_span
            assert w.span == (ex.token_span[0] + 1, ex.token_span[1] + 1)  # after BOS
            assert tok.decode(w.ids[w.span[0]:w.span[1]]) == ex.text[s:e]
            assert token_span_to_char_span(w.offsets, *w.span) == ex.char_span


def test_bpe_span_edges(tiny_project, project_tokenizer):
    corpus = [json.dumps({"text": "hello world", "span": [6, 11]})] * 50
    odd = [
        json.dumps({"text": "hello world", "span": [5, 11]}),  # starts on a trimmed space
        json.dumps({"text": "hello world", "span": [7, 9]}),  # inside the token "world"
    ]
    cfg = span_project(tiny_project, corpus + odd,
                       tokenizer={"kind": "bpe", "vocab_size": 300, "min_frequency": 2})
    tok = project_tokenizer(cfg)
    assert tok.encode(" world") == tok.encode(" world")[:1]  # one token "Ġworld"
    prepared = prepare_data(cfg, tok, progress=False, log=quiet)
    examples = read_examples(prepared.train)
    assert all(tok.decode(e.ids[e.token_span[0]:e.token_span[1]]).strip() == "world"
               for e in examples)
    assert prepared.report.skipped == {"span not covered by tokens": 1}
    assert prepared.report.widened_spans == 1  # kept, but counted and warned
    assert "inside a token" in prepared.report.format()


def test_traces_stay_on_one_side(tiny_project, project_tokenizer):
    lines = []
    for t in range(40):
        for step in range(3):
            text = f"term {t} step {step}"
            span = None if step == 2 else [0, 4]
            lines.append(json.dumps({"text": text, "span": span, "trace_id": f"tr{t}",
                                     "step": step, "steps_total": 3}))
    cfg = tiny_project("span", files={"data/train.jsonl": "\n".join(lines) + "\n"},
                       config={"data": {"val_fraction": 0.25}})
    tok = project_tokenizer(cfg)
    prepared = prepare_data(cfg, tok, progress=False, log=quiet)
    train = read_examples(prepared.train)
    val = read_examples(prepared.val)
    train_traces = {e.trace["trace_id"] for e in train}
    val_traces = {e.trace["trace_id"] for e in val}
    assert not train_traces & val_traces and val_traces
    assert len(train) + len(val) == len(lines)
    assert len(val) == 3 * len(val_traces)
    assert prepared.report.nospan_val == len(val_traces)


def test_val_duplicates_of_train_texts_are_counted(tiny_project, project_tokenizer):
    cfg = span_project(tiny_project,
                       [json.dumps({"text": "a cat sat", "span": [2, 5]}),
                        json.dumps({"text": "a dog ran", "span": None})],
                       val_lines=[json.dumps({"text": "a cat sat", "span": [2, 5]}),
                                  json.dumps({"text": "new", "span": None})])
    tok = project_tokenizer(cfg)
    logged: list[str] = []
    prepared = prepare_data(cfg, tok, progress=False, log=logged.append)
    assert prepared.report.duplicate_val_texts == 1
    assert prepared.report.nospan_train == 1 and prepared.report.nospan_val == 1
    # The report counts; the verdict is a finding, made in one place (llmkit.preflight).
    gpt = GPTConfig(vocab_size=tok.vocab_size, n_layer=2, n_head=2, n_embd=16, block_size=32,
                    causal=False)
    logged += preflight_warnings(cfg, gpt, prepared.meta["report"])
    assert any("1 of 2 validation examples (50.0%) have a text or context that is also in "
               "the training"
               in m for m in logged)


def _sides(prepared) -> tuple[list[SpanExample], list[SpanExample]]:
    return read_examples(prepared.train), read_examples(prepared.val)


def test_questions_on_one_context_stay_on_one_side(tiny_project, project_tokenizer):
    # One data file, no group field: 3 questions on each of 40 paragraphs.
    lines = []
    for c in range(40):
        context = f"paragraph {c} about cats and dogs"
        for q in range(3):
            lines.append(json.dumps({"id": f"{c}-{q}", "question": f"q{q}?",
                                     "context": context, "span": [0, 9] if q else None}))
    cfg = tiny_project("span", files={"data/train.jsonl": "\n".join(lines) + "\n"},
                       config={"data": {"val_fraction": 0.25}})
    tok = project_tokenizer(cfg)
    logged: list[str] = []
    prepared = prepare_data(cfg, tok, progress=False, log=logged.append)
    train, val = _sides(prepared)
    assert val and train and len(train) + len(val) == len(lines)
    train_contexts, val_contexts = {e.text for e in train}, {e.text for e in val}
    assert not train_contexts & val_contexts
    assert len(val) == 3 * len(val_contexts)  # whole paragraphs moved, never one question
    assert prepared.report.duplicate_val_texts == 0
    assert re.search(r"^  val overlap +0 val examples share their text/context with train$",
                     prepared.report.format(), re.M)
    assert all(e.prefix.startswith("q") and e.prefix_ids for e in train)


def test_group_field_keeps_a_group_on_one_side(tiny_project, project_tokenizer):
    # Different texts, one group each 4 lines: the group decides, not the text.
    lines = [json.dumps({"text": f"text number {i}", "span": None, "group": i // 4})
             for i in range(120)]
    cfg = tiny_project("span", files={"data/train.jsonl": "\n".join(lines) + "\n"},
                       config={"data": {"val_fraction": 0.25}})
    tok = project_tokenizer(cfg)
    train, val = _sides(prepare_data(cfg, tok, progress=False, log=quiet))
    group_of = {f"text number {i}": i // 4 for i in range(120)}
    train_groups = {group_of[e.text] for e in train}
    val_groups = {group_of[e.text] for e in val}
    assert val_groups and train_groups and not train_groups & val_groups
    assert len(val) == 4 * len(val_groups)


def test_shared_contexts_across_explicit_files_are_counted(tiny_project, project_tokenizer):
    # With data.val given, llmkit does not move examples, but it reports the leak.
    ctx = "the shared paragraph"
    cfg = span_project(tiny_project,
                       [json.dumps({"question": "a?", "context": ctx, "span": [4, 10]}),
                        json.dumps({"question": "b?", "context": "other", "span": None})],
                       val_lines=[json.dumps({"question": "c?", "context": ctx,
                                              "span": None})])
    tok = project_tokenizer(cfg)
    prepared = prepare_data(cfg, tok, progress=False, log=quiet)
    assert prepared.report.duplicate_val_texts == 1


def test_long_texts_are_windowed_not_skipped(tiny_project, project_tokenizer):
    # block_size 32 (the tiny test config): 30 context characters per window.
    long_text = "".join(chr(ord("a") + i % 26) for i in range(100))
    cfg = span_project(tiny_project, [json.dumps({"text": long_text, "span": [90, 95]}),
                                      json.dumps({"text": "short", "span": None})])
    tok = project_tokenizer(cfg)
    logged: list[str] = []
    prepared = prepare_data(cfg, tok, progress=False, log=logged.append)
    assert prepared.report.skipped == {}
    (ex, _) = read_examples(prepared.train)
    starts = ex.window_starts(32, None)
    assert starts == [0, 15, 30, 45, 60, 70]  # stride 15, the last one aligned to the end
    assert prepared.report.windows_train == len(starts) + 1
    assert prepared.report.multi_window_examples == 1
    assert prepared.report.example_tokens["max"] == 102
    report = prepared.report.format()
    assert "windows          train 7   val 1" in report
    assert "longer than block_size 32 (read in windows)" in report


def test_text_files_are_refused_for_spans(tiny_project, project_tokenizer):
    cfg = tiny_project("span", files={"data/train.txt": "plain text\n"})
    tok = project_tokenizer(cfg)
    with pytest.raises(DataError, match=r"data/train\.txt: span data must be JSON Lines"):
        prepare_data(cfg, tok, progress=False, log=quiet)


def test_block_size_shapes_the_span_cache(tiny_project, project_tokenizer):
    cfg = tiny_project("span")
    tok = project_tokenizer(cfg)
    prepare_data(cfg, tok, progress=False, log=quiet)
    from llmkit.data import stale_reason

    assert stale_reason(cfg, tok) is None
    assert stale_reason(cfg.replace("model", block_size=64), tok) == (
        "model.block_size changed 32 -> 64")
