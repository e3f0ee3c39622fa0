"""Tests for the lambda-calculus span example: term model, reduction, spans, generator."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "lambda_spans"
SAMPLE_DATA = ROOT / "llmkit" / "templates" / "span" / "data"

# generate.py imports `lambda_terms` by that name, so the test must too (one module object,
# one set of classes); generate.py itself gets a unique name to avoid clashing with other
# examples' scripts.
sys.path.insert(0, str(EXAMPLE))
import lambda_terms as lt  # noqa: E402

_spec = importlib.util.spec_from_file_location("lambda_spans_generate", EXAMPLE / "generate.py")
gen = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = gen  # dataclasses look their module up while the class is built
_spec.loader.exec_module(gen)


def trace_texts(text: str, **bounds: int) -> list[str]:
    trace = lt.reduce_trace(lt.parse_term(text), **bounds)
    assert trace.status == "normal_form"
    return [lt.print_term(t) for t in trace.terms]


# ----------------------------------------------------------------- known reductions


def test_identity_applied_reduces_to_argument() -> None:
    assert trace_texts(r"(\x.x) y") == [r"(\x.x) y", "y"]


def test_k_combinator_reduces_in_two_steps() -> None:
    assert trace_texts(r"(\x.\y.x) a b") == [r"(\x.\y.x) a b", r"(\y.a) b", "a"]


def test_substitution_renames_binder_that_would_capture() -> None:
    result = lt.step(lt.parse_term(r"(\x.\y.x) y"))
    assert lt.print_term(result) == r"\y1.y"
    # The y in the body is the free y of the argument, not the binder.
    assert isinstance(result, lt.Lam) and result.var != "y"
    assert lt.free_vars(result) == {"y"}


def test_fresh_name_skips_names_already_used_in_the_body() -> None:
    result = lt.step(lt.parse_term(r"(\x.\y.x y1) y"))
    assert lt.print_term(result) == r"\y2.y y1"


def test_no_renaming_when_the_variable_is_not_substituted_below() -> None:
    # x does not occur under \y, so y need not be renamed even though the argument is y.
    assert trace_texts(r"(\x.\y.y) y") == [r"(\x.\y.y) y", r"\y.y"]


def test_normal_order_discards_a_diverging_argument() -> None:
    assert trace_texts(r"(\x.\y.x) a ((\x.x x) (\x.x x))")[-1] == "a"


@pytest.mark.parametrize(
    ("op", "args", "expected"),
    [("plus", (2, 3), 5), ("mult", (2, 3), 6), ("succ", (2,), 3), ("pow", (2, 3), 8)],
)
def test_church_arithmetic_normalises_to_the_numeral(
    op: str, args: tuple[int, ...], expected: int
) -> None:
    term = gen._apply(gen.ARITHMETIC[op], *(lt.church(n) for n in args))
    trace = lt.reduce_trace(term, max_steps=100, max_len=1000)
    assert trace.status == "normal_form"
    result = trace.terms[-1]
    assert lt.alpha_equal(result, lt.church(expected))
    assert lt.church_value(result) == expected


def test_alpha_equal_ignores_bound_names_only() -> None:
    assert lt.alpha_equal(lt.parse_term(r"\a.\b.a b"), lt.parse_term(r"\x.\y.x y"))
    assert not lt.alpha_equal(lt.parse_term(r"\a.\b.a b"), lt.parse_term(r"\x.\y.y x"))
    assert not lt.alpha_equal(lt.parse_term(r"\a.c"), lt.parse_term(r"\a.d"))


def test_omega_has_no_normal_form() -> None:
    trace = lt.reduce_trace(gen.OMEGA, max_steps=30)
    assert trace.status == "no_normal_form"
    assert len(trace.terms) == 31


def test_term_longer_than_max_len_is_reported() -> None:
    # Each step of (\x.x x x) applied to itself grows the term.
    grow = lt.parse_term(r"(\x.x x x) \x.x x x")
    assert lt.reduce_trace(grow, max_steps=30, max_len=60).status == "too_long"


# ------------------------------------------------------------- printing and parsing


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        (r"(\x.x) y", r"(\x.x) y"),
        (r"\f.\x.f (f x)", r"\f.\x.f (f x)"),
        (r"(f a) b", "f a b"),
        (r"f (\x.x)", r"f \x.x"),
        (r"f (\x.x) y", r"f (\x.x) y"),
        (r"(\x.x x) (\x.x x)", r"(\x.x x) \x.x x"),
        (r"\x.((\y.y) x)", r"\x.(\y.y) x"),
        ("a  (b   c)", "a (b c)"),
        (r"(\x.x) ((\y.y) z)", r"(\x.x) ((\y.y) z)"),
        (r"f ((\x.x) \y.y) z", r"f ((\x.x) \y.y) z"),
    ],
)
def test_printer_writes_minimal_parentheses(text: str, canonical: str) -> None:
    assert lt.print_term(lt.parse_term(text)) == canonical


@pytest.mark.parametrize(
    ("text", "offset"), [("(x y", 4), (r"\x y", 3), ("x )", 2), ("x + y", 2), ("", 0)]
)
def test_parser_names_the_offset_of_bad_text(text: str, offset: int) -> None:
    with pytest.raises(lt.LambdaSyntaxError, match=f"offset {offset}"):
        lt.parse_term(text)


NAMES = st.sampled_from(["x", "y", "z", "f", "a", "x1", "y12", "ab"])
TERMS = st.recursive(
    st.builds(lt.Var, NAMES),
    lambda sub: st.builds(lt.App, sub, sub) | st.builds(lt.Lam, NAMES, sub),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None)
@given(TERMS)
def test_print_parse_round_trip(term: lt.Term) -> None:
    text = lt.print_term(term)
    assert lt.parse_term(text) == term
    # Parentheses are minimal: removing any matching pair changes or breaks the term.
    for i, ch in enumerate(text):
        if ch != "(":
            continue
        j, depth = i, 0
        for j in range(i, len(text)):
            depth += {"(": 1, ")": -1}.get(text[j], 0)
            if depth == 0:
                break
        try:
            stripped = lt.parse_term(text[:i] + text[i + 1 : j] + text[j + 1 :])
        except lt.LambdaSyntaxError:
            continue
        assert stripped != term, f"parentheses at {i}..{j} in {text!r} are redundant"


@settings(max_examples=150, deadline=None)
@given(TERMS)
def test_every_subterm_span_reads_back_as_that_subterm(term: lt.Term) -> None:
    rendered = lt.render(term)
    assert set(rendered.spans) == set(lt.subterm_paths(term))
    for path, (start, end) in rendered.spans.items():
        assert 0 <= start < end <= len(rendered.text)
        assert lt.parse_term(rendered.text[start:end]) == lt.subterm_at(term, path)


def test_redex_span_includes_own_parentheses_not_the_context_ones() -> None:
    text = r"f ((\x.x) y)"
    start, end = lt.redex_span(lt.parse_term(text))
    assert (start, end) == (3, 11)
    assert text[start:end] == r"(\x.x) y"


# ------------------------------------------------------------------ generated traces


def check_trace(trace: gen.TraceExamples) -> None:
    """Every non-final span is exactly the leftmost-outermost redex; the final step has none."""
    for k, (text, span) in enumerate(zip(trace.texts, trace.spans, strict=True)):
        term = lt.parse_term(text)
        rendered = lt.render(term)
        assert rendered.text == text  # data texts are canonical
        redex_starts = [
            rendered.spans[p][0]
            for p in lt.subterm_paths(term)
            if lt.is_redex(lt.subterm_at(term, p))
        ]
        if k == len(trace.texts) - 1:
            assert span is None and not redex_starts
            continue
        assert span is not None, f"no span on non-final step {k} of {trace.trace_id}"
        start, end = span
        redex = lt.parse_term(text[start:end])
        assert isinstance(redex, lt.App) and isinstance(redex.fn, lt.Lam)
        assert start == min(redex_starts)  # leftmost; outermost since nested ones start later
        # Contracting the text inside the span gives exactly the next step.
        contracted = lt.print_term(lt.contract(redex))
        spliced = text[:start] + "(" + contracted + ")" + text[end:]
        assert lt.print_term(lt.parse_term(spliced)) == trace.texts[k + 1]


def test_generated_spans_are_the_leftmost_outermost_redex() -> None:
    traces, _ = gen.generate_traces(seed=1, n_traces=150)
    for trace in traces:
        check_trace(trace)


def test_redexes_sit_at_varied_offsets() -> None:
    traces, _ = gen.generate_traces(seed=2, n_traces=200)
    starts = [s[0] for t in traces for s in t.spans if s is not None]
    assert sum(s > 0 for s in starts) / len(starts) > 0.3
    assert len(set(starts)) > 10


def test_generation_is_deterministic_by_seed() -> None:
    a = gen.build_dataset(seed=5, n_traces=60, val_fraction=0.2, max_len=120, max_steps=30)
    b = gen.build_dataset(seed=5, n_traces=60, val_fraction=0.2, max_len=120, max_steps=30)
    c = gen.build_dataset(seed=6, n_traces=60, val_fraction=0.2, max_len=120, max_steps=30)
    assert (a.train, a.val) == (b.train, b.val)
    assert [ex["text"] for ex in a.train] != [ex["text"] for ex in c.train]


def test_diverging_and_oversized_starts_are_dropped_and_counted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    starts = iter(
        [gen.OMEGA, lt.parse_term(r"(\x.x x x) \x.x x x"), lt.parse_term(r"(\x.x) y"), gen.OMEGA]
        + [lt.parse_term(f"(\\x.x) {v}") for v in "abc"]
    )
    monkeypatch.setattr(gen, "random_start_term", lambda rng: next(starts))
    traces, stats = gen.generate_traces(seed=0, n_traces=4, max_len=40, max_steps=30)
    assert stats.dropped_no_normal_form == 1
    assert stats.dropped_too_long == 1
    assert stats.duplicate_starts == 1
    assert (stats.kept, stats.attempted) == (4, 7)
    assert [t.texts[0] for t in traces] == [r"(\x.x) y", r"(\x.x) a", r"(\x.x) b", r"(\x.x) c"]


def test_impossible_bounds_fail_instead_of_looping() -> None:
    with pytest.raises(RuntimeError, match="raise the bounds"):
        gen.generate_traces(seed=0, n_traces=5, max_len=2, max_steps=30)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def check_files(train: list[dict], val: list[dict], max_len: int = 120) -> None:
    """Invariants every written dataset must hold."""
    train_traces = {ex["trace_id"] for ex in train}
    assert train_traces.isdisjoint(ex["trace_id"] for ex in val)
    train_texts = [ex["text"] for ex in train]
    val_texts = [ex["text"] for ex in val]
    assert len(set(train_texts)) == len(train_texts)
    assert len(set(val_texts)) == len(val_texts)
    assert set(train_texts).isdisjoint(val_texts)
    for ex in train + val:
        assert set(ex) == {"text", "span", "trace_id", "step", "steps_total"}
        assert len(ex["text"]) <= max_len
        is_final = ex["step"] == ex["steps_total"] - 1
        assert (ex["span"] is None) == is_final
        if ex["span"] is not None:
            start, end = ex["span"]
            assert lt.is_redex(lt.parse_term(ex["text"][start:end]))
            assert (start, end) == lt.redex_span(lt.parse_term(ex["text"]))


def test_cli_writes_split_files_and_prints_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "data"
    argv = ["--out", str(out), "--seed", "3", "--n-traces", "120", "--val-fraction", "0.25"]
    assert gen.main([*argv, "--max-len", "80"]) == 0
    summary = capsys.readouterr().out
    assert "dropped" in summary and "longer than 80 chars" in summary
    assert "no-span share" in summary and "also in train" in summary
    assert sorted(p.name for p in out.iterdir()) == ["train.jsonl", "val.jsonl"]
    train, val = read_jsonl(out / "train.jsonl"), read_jsonl(out / "val.jsonl")
    assert train and val
    check_files(train, val, max_len=80)


def test_val_texts_seen_in_train_are_removed_and_counted() -> None:
    train = [{"text": "a"}, {"text": "b"}, {"text": "a"}]
    val = [{"text": "b"}, {"text": "c"}, {"text": "c"}]
    kept_train, kept_val, stats = gen.dedupe(train, val)
    assert [ex["text"] for ex in kept_train] == ["a", "b"]
    assert [ex["text"] for ex in kept_val] == ["c"]
    assert (stats.train_repeats, stats.val_repeats, stats.val_in_train) == (1, 1, 1)


def test_shipped_sample_data_is_valid() -> None:
    train = read_jsonl(SAMPLE_DATA / "train.jsonl")
    val = read_jsonl(SAMPLE_DATA / "val.jsonl")
    assert 1500 <= len(train) <= 3000 and 100 <= len(val) <= 400
    for name in ("train.jsonl", "val.jsonl"):
        assert (SAMPLE_DATA / name).stat().st_size < 400_000
    check_files(train, val)
