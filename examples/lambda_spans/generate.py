"""Generate span-prediction data from normal-order reductions of lambda terms.

Each example is one step of a reduction trace: the printed term and the character span
`[start, end)` of its leftmost-outermost redex, or `null` on the trace's final, normal-form
step. See README.md for the data format and lambda_terms.py for the span definition.

    python generate.py --out data --seed 0 --n-traces 2000
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

# The generator is a script run from anywhere; its term model sits next to it.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from lambda_terms import (  # noqa: E402
    App,
    Lam,
    Term,
    Var,
    church,
    parse_term,
    print_term,
    redex_span,
    reduce_trace,
)

# ----------------------------------------------------------------- the term library

def _parse_all(texts: dict[str, str]) -> dict[str, Term]:
    """Named terms from their text."""
    return {name: parse_term(text) for name, text in texts.items()}


COMBINATORS: dict[str, Term] = _parse_all({
    "I": r"\x.x",
    "K": r"\x.\y.x",
    "KI": r"\x.\y.y",
    "S": r"\x.\y.\z.x z (y z)",
    "B": r"\f.\g.\x.f (g x)",
    "C": r"\f.\x.\y.f y x",
    "W": r"\x.\y.x y y",
    "M": r"\x.x x",
})
ARITHMETIC: dict[str, Term] = _parse_all({
    "succ": r"\n.\f.\x.f (n f x)",
    "plus": r"\m.\n.\f.\x.m f (n f x)",
    "mult": r"\m.\n.\f.m (n f)",
    "pow": r"\m.\n.n m",
})
LOGIC: dict[str, Term] = _parse_all({
    "true": r"\t.\f.t",
    "false": r"\t.\f.f",
    "and": r"\p.\q.p q p",
    "or": r"\p.\q.p p q",
    "not": r"\p.\a.\b.p b a",
    "if": r"\c.\t.\e.c t e",
    "pair": r"\a.\b.\s.s a b",
    "fst": r"\p.p (\a.\b.a)",
    "snd": r"\p.p (\a.\b.b)",
})
OMEGA = parse_term(r"(\x.x x) (\x.x x)")

# Free variables deliberately share letters with the binders of random terms, so that
# substitutions that need renaming (capture) are common rather than a corner case.
FREE_NAMES = "abcdghxyz"
BOUND_NAMES = "xyzuvwfn"


def _apply(*terms: Term) -> Term:
    """Left-associated application `t0 t1 t2 ...`."""
    result = terms[0]
    for arg in terms[1:]:
        result = App(result, arg)
    return result


def _free_var(rng: random.Random) -> Term:
    return Var(rng.choice(FREE_NAMES))


def random_term(rng: random.Random, size: int, bound: tuple[str, ...] = ()) -> Term:
    """A random term of about `size` nodes; application functions are often abstractions,
    so redexes are frequent and sit anywhere in the term."""
    if size <= 1:
        if bound and rng.random() < 0.8:
            return Var(rng.choice(bound))
        return _free_var(rng)
    if rng.random() < 0.35:
        var = rng.choice(BOUND_NAMES)
        return Lam(var, random_term(rng, size - 1, (*bound, var)))
    left = rng.randint(1, size - 1)
    if rng.random() < 0.45 and left >= 2:
        var = rng.choice(BOUND_NAMES)
        fn: Term = Lam(var, random_term(rng, left - 1, (*bound, var)))
    else:
        fn = random_term(rng, left, bound)
    return App(fn, random_term(rng, size - left, bound))


def _small_arg(rng: random.Random) -> Term:
    """An argument for a combinator: a free variable, a numeral, or a small random term."""
    roll = rng.random()
    if roll < 0.55:
        return _free_var(rng)
    if roll < 0.7:
        return church(rng.randint(0, 2))
    if roll < 0.75:
        # Only normal order survives a discarded Omega: `K a Omega` has a normal form.
        return OMEGA
    return random_term(rng, rng.randint(2, 5))


def arithmetic_term(rng: random.Random) -> Term:
    """Church arithmetic: succ, plus, mult, pow on small numerals, or a numeral put to work."""
    kind = rng.choice(["succ", "plus", "mult", "pow", "apply", "nested"])
    if kind == "succ":
        return _apply(ARITHMETIC["succ"], church(rng.randint(0, 4)))
    if kind in ("plus", "mult"):
        return _apply(ARITHMETIC[kind], church(rng.randint(0, 3)), church(rng.randint(0, 3)))
    if kind == "pow":
        return _apply(ARITHMETIC["pow"], church(rng.randint(1, 2)), church(rng.randint(0, 2)))
    if kind == "apply":
        # A numeral applied to a function and a start value: `c3 g a` -> `g (g (g a))`.
        return _apply(church(rng.randint(0, 4)), _free_var(rng), _free_var(rng))
    inner = _apply(ARITHMETIC["succ"], church(rng.randint(0, 2)))
    return _apply(ARITHMETIC[rng.choice(["plus", "mult"])], inner, church(rng.randint(0, 2)))


def combinator_term(rng: random.Random) -> Term:
    """A combinator applied to arguments (`S K K a`, `B g h a`, `K a Omega`, ...)."""
    names = list(COMBINATORS)
    head = COMBINATORS[rng.choice(names)]
    args: list[Term] = []
    for _ in range(rng.randint(1, 3)):
        if rng.random() < 0.3:
            args.append(COMBINATORS[rng.choice(names)])
        else:
            args.append(_small_arg(rng))
    return _apply(head, *args)


def logic_term(rng: random.Random) -> Term:
    """Church booleans and pairs: `and true false`, `if c a b`, `fst (pair a b)`."""
    kind = rng.choice(["binary", "not", "if", "pair"])

    def boolean() -> Term:
        return LOGIC[rng.choice(["true", "false"])]

    if kind == "binary":
        return _apply(LOGIC[rng.choice(["and", "or"])], boolean(), boolean())
    if kind == "not":
        return _apply(LOGIC["not"], boolean(), _free_var(rng), _free_var(rng))
    if kind == "if":
        return _apply(LOGIC["if"], boolean(), _small_arg(rng), _small_arg(rng))
    pair = _apply(LOGIC["pair"], _small_arg(rng), _small_arg(rng))
    return _apply(LOGIC[rng.choice(["fst", "snd"])], pair)


def in_context(rng: random.Random, term: Term) -> Term:
    """Put `term` under a binder or in argument position, so the first redex is not
    always at offset 0."""
    kind = rng.choice(["lam", "arg", "arg_then", "second_arg"])
    if kind == "lam":
        return Lam(rng.choice("vwu"), term)
    if kind == "arg":
        return App(Var(rng.choice("gh")), term)
    if kind == "arg_then":
        return _apply(Var(rng.choice("gh")), term, _free_var(rng))
    # A free head and a variable before the term: `g a T`.
    return _apply(Var(rng.choice("gh")), _free_var(rng), term)


Maker = Callable[[random.Random], Term]
MIX: list[tuple[Maker, float]] = [
    (lambda rng: random_term(rng, rng.randint(3, 12)), 0.35),
    (arithmetic_term, 0.25),
    (combinator_term, 0.25),
    (logic_term, 0.15),
]
CONTEXT_PROBABILITY = 0.4


def random_start_term(rng: random.Random) -> Term:
    """One starting term drawn from the mix of random terms, arithmetic, combinators, logic."""
    makers, weights = zip(*MIX, strict=True)
    term = rng.choices(makers, weights)[0](rng)
    if rng.random() < CONTEXT_PROBABILITY:
        term = in_context(rng, term)
    return term


# ----------------------------------------------------------------------- traces


@dataclass(frozen=True)
class TraceExamples:
    """One kept trace: its id and its printed steps with their redex spans."""

    trace_id: str
    texts: tuple[str, ...]
    spans: tuple[tuple[int, int] | None, ...]

    def examples(self) -> list[dict]:
        """The JSONL records of this trace, one per step."""
        total = len(self.texts)
        return [
            {
                "text": text,
                "span": None if span is None else [span[0], span[1]],
                "trace_id": self.trace_id,
                "step": k,
                "steps_total": total,
            }
            for k, (text, span) in enumerate(zip(self.texts, self.spans, strict=True))
        ]


@dataclass
class GenerationStats:
    """Counts of what happened to the generated starting terms."""

    attempted: int = 0
    kept: int = 0
    dropped_no_normal_form: int = 0
    dropped_too_long: int = 0
    duplicate_starts: int = 0


def generate_traces(
    seed: int, n_traces: int, max_len: int = 120, max_steps: int = 30
) -> tuple[list[TraceExamples], GenerationStats]:
    """Draw starting terms until `n_traces` traces reach normal form within the bounds.

    Traces without a normal form in `max_steps` steps, or with any term longer than
    `max_len` characters, are dropped and counted; repeated starting terms are skipped.
    """
    rng = random.Random(seed)
    stats = GenerationStats()
    traces: list[TraceExamples] = []
    seen_starts: set[str] = set()
    # Bounded so that impossible bounds (max_len=3) fail instead of looping forever.
    max_attempts = 50 * n_traces + 1000
    while stats.kept < n_traces:
        if stats.attempted >= max_attempts:
            raise RuntimeError(
                f"only {stats.kept} of {n_traces} traces fit max_len={max_len} and "
                f"max_steps={max_steps} after {stats.attempted} attempts; raise the bounds"
            )
        stats.attempted += 1
        start = random_start_term(rng)
        start_text = print_term(start)
        if start_text in seen_starts:
            stats.duplicate_starts += 1
            continue
        seen_starts.add(start_text)
        trace = reduce_trace(start, max_steps=max_steps, max_len=max_len)
        if trace.status == "too_long":
            stats.dropped_too_long += 1
            continue
        if trace.status == "no_normal_form":
            stats.dropped_no_normal_form += 1
            continue
        traces.append(
            TraceExamples(
                trace_id=f"s{seed}-{stats.kept:06d}",
                texts=tuple(print_term(t) for t in trace.terms),
                spans=tuple(redex_span(t) for t in trace.terms),
            )
        )
        stats.kept += 1
    return traces, stats


def split_traces(
    traces: Sequence[TraceExamples], val_fraction: float, seed: int
) -> tuple[list[TraceExamples], list[TraceExamples]]:
    """Split whole traces into (train, val), deterministically by seed; a trace is never in
    both. Order within each split follows generation order."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    order = list(range(len(traces)))
    # A string seed keeps this stream independent of the term stream (and is stable
    # across Python versions, unlike hash()).
    random.Random(f"split-{seed}").shuffle(order)
    n_val = round(len(traces) * val_fraction)
    if val_fraction > 0 and n_val == 0 and len(traces) > 1:
        n_val = 1
    val_ids = set(order[:n_val])
    train = [t for i, t in enumerate(traces) if i not in val_ids]
    val = [t for i, t in enumerate(traces) if i in val_ids]
    return train, val


@dataclass
class DedupeStats:
    """Examples removed so that no text repeats within a file or across train and val."""

    train_repeats: int = 0
    val_repeats: int = 0
    val_in_train: int = 0


def dedupe(train: list[dict], val: list[dict]) -> tuple[list[dict], list[dict], DedupeStats]:
    """Keep the first example of each text within each split, then drop val examples whose
    text is also in train.

    Repeats are common (`y`, small numerals end many traces); the span is a function of the
    text, so a repeated text carries no new label, only extra weight and val leakage.
    """
    stats = DedupeStats()

    def unique(examples: list[dict]) -> tuple[list[dict], int]:
        seen: set[str] = set()
        kept = []
        for ex in examples:
            if ex["text"] not in seen:
                seen.add(ex["text"])
                kept.append(ex)
        return kept, len(examples) - len(kept)

    train, stats.train_repeats = unique(train)
    val, stats.val_repeats = unique(val)
    train_texts = {ex["text"] for ex in train}
    kept_val = [ex for ex in val if ex["text"] not in train_texts]
    stats.val_in_train = len(val) - len(kept_val)
    return train, kept_val, stats


# ----------------------------------------------------------------------- output


def write_jsonl_atomic(path: Path, examples: Sequence[dict]) -> None:
    """Write one JSON object per line to `path` via a temporary file and os.replace, so a
    crash never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # A plain open() (not mkstemp) so the file gets the user's usual permissions.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            for ex in examples:
                f.write(json.dumps(ex, ensure_ascii=False) + "\n")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@dataclass
class Summary:
    """Everything the generator reports about one run."""

    generation: GenerationStats
    dedupe: DedupeStats
    train_traces: int
    val_traces: int
    train: list[dict] = field(repr=False)
    val: list[dict] = field(repr=False)

    def lines(self, max_len: int, max_steps: int) -> list[str]:
        """The human-readable summary printed by the CLI."""
        g, d = self.generation, self.dedupe
        everything = self.train + self.val
        starts = [ex["span"][0] for ex in everything if ex["span"] is not None]
        lengths = [len(ex["text"]) for ex in everything]
        at_zero = sum(s == 0 for s in starts) / len(starts) if starts else 0.0
        return [
            f"traces: {g.kept} kept of {g.attempted} generated; dropped "
            f"{g.dropped_no_normal_form} with no normal form within {max_steps} steps, "
            f"{g.dropped_too_long} longer than {max_len} chars; "
            f"skipped {g.duplicate_starts} repeated start terms",
            f"train: {len(self.train)} examples from {self.train_traces} traces "
            f"(removed {d.train_repeats} repeated texts)",
            f"val:   {len(self.val)} examples from {self.val_traces} traces "
            f"(removed {d.val_repeats} repeated texts, {d.val_in_train} texts also in train)",
            f"no-span share: train {_share_no_span(self.train):.1%}, "
            f"val {_share_no_span(self.val):.1%}",
            f"redex start offsets: {at_zero:.1%} at 0, median "
            f"{statistics.median(starts) if starts else 0:g}, max {max(starts, default=0)}",
            f"text length: mean {statistics.fmean(lengths) if lengths else 0:.1f}, "
            f"max {max(lengths, default=0)}",
        ]


def _share_no_span(examples: Sequence[dict]) -> float:
    return sum(ex["span"] is None for ex in examples) / len(examples) if examples else 0.0


def build_dataset(
    seed: int, n_traces: int, val_fraction: float, max_len: int, max_steps: int
) -> Summary:
    """Generate, split by trace, flatten to examples and dedupe; nothing is written."""
    traces, generation = generate_traces(seed, n_traces, max_len=max_len, max_steps=max_steps)
    train_traces, val_traces = split_traces(traces, val_fraction, seed)
    train = [ex for t in train_traces for ex in t.examples()]
    val = [ex for t in val_traces for ex in t.examples()]
    train, val, dedupe_stats = dedupe(train, val)
    return Summary(
        generation=generation,
        dedupe=dedupe_stats,
        train_traces=len(train_traces),
        val_traces=len(val_traces),
        train=train,
        val=val,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point: generate DIR/train.jsonl and DIR/val.jsonl and print a summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the JSONL files")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--n-traces", type=int, default=2000, help="traces to keep (default 2000)")
    parser.add_argument(
        "--val-fraction", type=float, default=0.1, help="share of traces for val (default 0.1)"
    )
    parser.add_argument(
        "--max-len", type=int, default=120, help="longest printed term kept (default 120)"
    )
    parser.add_argument(
        "--max-steps", type=int, default=30, help="most reduction steps per trace (default 30)"
    )
    args = parser.parse_args(argv)
    if args.n_traces < 1:
        parser.error(f"--n-traces must be at least 1, got {args.n_traces}")
    if not 0.0 <= args.val_fraction < 1.0:
        parser.error(f"--val-fraction must be in [0, 1), got {args.val_fraction}")
    if args.max_len < 1 or args.max_steps < 0:
        parser.error("--max-len must be at least 1 and --max-steps at least 0")

    try:
        summary = build_dataset(
            args.seed, args.n_traces, args.val_fraction, args.max_len, args.max_steps
        )
    except RuntimeError as err:  # bounds too tight to find enough traces
        parser.error(str(err))
    write_jsonl_atomic(args.out / "train.jsonl", summary.train)
    write_jsonl_atomic(args.out / "val.jsonl", summary.val)
    for line in summary.lines(args.max_len, args.max_steps):
        print(line)
    print(f"wrote {args.out / 'train.jsonl'} and {args.out / 'val.jsonl'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
