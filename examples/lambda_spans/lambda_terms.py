"""Untyped lambda calculus: terms, canonical printing with subterm spans, parsing, reduction.

Syntax (the canonical text that `print_term` writes and `parse_term` reads)::

    x  y1  f           variables: a lowercase letter, then lowercase letters or digits
    \\x.body            abstraction; the body extends as far right as possible
    f a b              application, left-associative: (f a) b

Parentheses are minimal: an abstraction is parenthesised when something follows it in the
same bracket level (in function position, or as an argument that is not last), and an
application is parenthesised in argument position. So `(\\x.x) y`, `\\f.\\x.f (f x)`,
`f (\\x.x) y` and `f \\x.x` are canonical; `f (\\x.x)` and `(f a) b` are not (but parse).

Spans are character offsets into the printed text with an exclusive end, `[start, end)`.
The span of a subterm covers the text that prints that subterm *itself*: it includes any
parentheses the subterm puts around its own children (so a redex `(\\x.M) N` includes the
parentheses around its abstraction) and excludes the parentheses that the surrounding
context puts around the subterm (so in `f ((\\x.x) y)` the redex span is `(\\x.x) y`, offsets
3 to 11). `parse_term(text[start:end])` is always the subterm again.

Reduction is normal order: contract the leftmost-outermost redex, which is also the redex
whose span starts first in the printed text. Substitution avoids capture by renaming a
binder to the first fresh name `<letters><k>`, k = 1, 2, ..., that is neither free in the
substituted term nor used anywhere in the abstraction (`(\\x.\\y.x) y` reduces to `\\y1.y`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

# A path names a subterm by the child indices leading to it from the root: for an
# application 0 is the function and 1 the argument; for an abstraction 0 is the body.
Path = tuple[int, ...]
Span = tuple[int, int]


@dataclass(frozen=True)
class Var:
    """A variable occurrence."""

    name: str


@dataclass(frozen=True)
class Lam:
    """An abstraction `\\var.body`."""

    var: str
    body: Term


@dataclass(frozen=True)
class App:
    """An application `fn arg`."""

    fn: Term
    arg: Term


Term = Var | Lam | App


class LambdaSyntaxError(ValueError):
    """Raised by `parse_term` for text that is not a lambda term; names the offset."""


# ---------------------------------------------------------------------------- printing


@dataclass(frozen=True)
class Rendered:
    """A term's canonical text and the span of every subterm in it, keyed by path."""

    text: str
    spans: dict[Path, Span]


def render(term: Term) -> Rendered:
    """Print `term` canonically and record the `[start, end)` span of each subterm."""
    parts: list[str] = []
    spans: dict[Path, Span] = {}
    pos = 0

    def write(s: str) -> None:
        nonlocal pos
        parts.append(s)
        pos += len(s)

    def child(t: Term, path: Path, tail: bool, is_arg: bool) -> None:
        # `tail`: nothing follows this subterm inside its bracket level, so an abstraction
        # here may extend to the right without parentheses.
        if (isinstance(t, Lam) and not tail) or (is_arg and isinstance(t, App)):
            write("(")
            visit(t, path, tail=True)
            write(")")
        else:
            visit(t, path, tail)

    def visit(t: Term, path: Path, tail: bool) -> None:
        start = pos
        if isinstance(t, Var):
            write(t.name)
        elif isinstance(t, Lam):
            write(f"\\{t.var}.")
            child(t.body, (*path, 0), tail, is_arg=False)
        else:
            child(t.fn, (*path, 0), tail=False, is_arg=False)
            write(" ")
            child(t.arg, (*path, 1), tail, is_arg=True)
        spans[path] = (start, pos)

    visit(term, (), tail=True)
    return Rendered("".join(parts), spans)


def print_term(term: Term) -> str:
    """The canonical text of `term` (deterministic, minimal parentheses)."""
    return render(term).text


# ----------------------------------------------------------------------------- parsing

_TOKEN = re.compile(r"\s*(?:(?P<var>[a-z][a-z0-9]*)|(?P<sym>[\\.()]))")


def _tokenize(text: str) -> list[tuple[str, str, int]]:
    """Split text into (kind, value, offset) tokens; kind is 'var', a symbol, or 'end'."""
    tokens: list[tuple[str, str, int]] = []
    pos = 0
    while text[pos:].strip():
        m = _TOKEN.match(text, pos)
        if m is None:
            bad = pos + len(text[pos:]) - len(text[pos:].lstrip())
            raise LambdaSyntaxError(
                f"unexpected character {text[bad]!r} at offset {bad} in {text!r}; "
                "allowed: variables [a-z][a-z0-9]*, '\\', '.', '(', ')' and spaces"
            )
        group = "var" if m.group("var") else "sym"
        value = m.group(group)
        tokens.append(("var" if group == "var" else value, value, m.start(group)))
        pos = m.end()
    tokens.append(("end", "", len(text)))
    return tokens


class _Parser:
    """Recursive descent over the grammar

    term := '\\' var '.' term | atom+ ['\\' var '.' term]
    atom := var | '(' term ')'
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.i = 0

    def peek(self) -> str:
        return self.tokens[self.i][0]

    def take(self, kind: str) -> str:
        got, value, offset = self.tokens[self.i]
        if got != kind:
            found = "end of text" if got == "end" else repr(value)
            wanted = "a variable" if kind == "var" else repr(kind)
            raise LambdaSyntaxError(
                f"expected {wanted} at offset {offset} in {self.text!r}, found {found}"
            )
        self.i += 1
        return value

    def term(self) -> Term:
        if self.peek() == "\\":
            return self.lam()
        result = self.atom()
        while self.peek() in ("var", "("):
            result = App(result, self.atom())
        if self.peek() == "\\":
            # A trailing abstraction is the last argument: its body runs to the end.
            result = App(result, self.lam())
        return result

    def lam(self) -> Lam:
        self.take("\\")
        var = self.take("var")
        self.take(".")
        return Lam(var, self.term())

    def atom(self) -> Term:
        if self.peek() == "(":
            self.take("(")
            inner = self.term()
            self.take(")")
            return inner
        return Var(self.take("var"))


def parse_term(text: str) -> Term:
    """Parse lambda-term text (canonical or with extra parentheses and spaces).

    Raises:
        LambdaSyntaxError: the text is not a term; the message names the offset.
    """
    parser = _Parser(text)
    term = parser.term()
    parser.take("end")
    return term


# ----------------------------------------------------------------------------- paths


def subterm_at(term: Term, path: Path) -> Term:
    """The subterm of `term` at `path`."""
    for index in path:
        if isinstance(term, Lam) and index == 0:
            term = term.body
        elif isinstance(term, App) and index in (0, 1):
            term = term.fn if index == 0 else term.arg
        else:
            raise KeyError(f"path {path} does not exist in {print_term(term)!r}")
    return term


def replace_at(term: Term, path: Path, new: Term) -> Term:
    """`term` with the subterm at `path` replaced by `new`."""
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(term, Lam) and head == 0:
        return Lam(term.var, replace_at(term.body, rest, new))
    if isinstance(term, App) and head == 0:
        return App(replace_at(term.fn, rest, new), term.arg)
    if isinstance(term, App) and head == 1:
        return App(term.fn, replace_at(term.arg, rest, new))
    raise KeyError(f"path {path} does not exist in {print_term(term)!r}")


def subterm_paths(term: Term, path: Path = ()) -> list[Path]:
    """All paths of `term` in preorder (the order their spans start in the text)."""
    if isinstance(term, Var):
        return [path]
    if isinstance(term, Lam):
        return [path, *subterm_paths(term.body, (*path, 0))]
    return [path, *subterm_paths(term.fn, (*path, 0)), *subterm_paths(term.arg, (*path, 1))]


# ------------------------------------------------------------------------ substitution


def free_vars(term: Term) -> frozenset[str]:
    """Names that occur free in `term`."""
    if isinstance(term, Var):
        return frozenset((term.name,))
    if isinstance(term, Lam):
        return free_vars(term.body) - {term.var}
    return free_vars(term.fn) | free_vars(term.arg)


def all_names(term: Term) -> frozenset[str]:
    """Every name in `term`, free or bound (binders included)."""
    if isinstance(term, Var):
        return frozenset((term.name,))
    if isinstance(term, Lam):
        return all_names(term.body) | {term.var}
    return all_names(term.fn) | all_names(term.arg)


def fresh_name(name: str, avoid: frozenset[str] | set[str]) -> str:
    """The first `<letters of name><k>`, k = 1, 2, ..., not in `avoid` (x -> x1, x1 -> x2)."""
    base = name.rstrip("0123456789")
    k = 1
    while f"{base}{k}" in avoid:
        k += 1
    return f"{base}{k}"


def substitute(term: Term, name: str, value: Term) -> Term:
    """`term[name := value]`, renaming binders of `term` that would capture `value`'s free
    variables."""
    return _subst(term, name, value, free_vars(value))


def _subst(term: Term, name: str, value: Term, value_fv: frozenset[str]) -> Term:
    if isinstance(term, Var):
        return value if term.name == name else term
    if isinstance(term, App):
        return App(_subst(term.fn, name, value, value_fv), _subst(term.arg, name, value, value_fv))
    if term.var == name or name not in free_vars(term.body):
        # `name` is shadowed or absent below: nothing to substitute, and no renaming, which
        # keeps the printed traces free of needless fresh names.
        return term
    if term.var not in value_fv:
        return Lam(term.var, _subst(term.body, name, value, value_fv))
    # The binder would capture a free variable of `value`: rename it first. Avoiding every
    # name in the body (not only its free ones) keeps the inner binders untouched.
    new_var = fresh_name(term.var, value_fv | all_names(term.body) | {name})
    body = _subst(term.body, term.var, Var(new_var), frozenset((new_var,)))
    return Lam(new_var, _subst(body, name, value, value_fv))


# ---------------------------------------------------------------------------- reduction


def is_redex(term: Term) -> bool:
    """True for an application whose function is an abstraction, `(\\x.M) N`."""
    return isinstance(term, App) and isinstance(term.fn, Lam)


def find_redex(term: Term) -> Path | None:
    """Path of the leftmost-outermost redex, or None when `term` is in normal form."""
    if is_redex(term):
        return ()
    if isinstance(term, Lam):
        inner = find_redex(term.body)
        return None if inner is None else (0, *inner)
    if isinstance(term, App):
        for index, part in ((0, term.fn), (1, term.arg)):
            inner = find_redex(part)
            if inner is not None:
                return (index, *inner)
    return None


def contract(redex: Term) -> Term:
    """One beta step on a redex: `(\\x.M) N` -> `M[x := N]`."""
    if not (isinstance(redex, App) and isinstance(redex.fn, Lam)):
        raise ValueError(f"not a redex: {print_term(redex)!r}")
    return substitute(redex.fn.body, redex.fn.var, redex.arg)


def step(term: Term) -> Term | None:
    """One normal-order step, or None when `term` is in normal form."""
    path = find_redex(term)
    if path is None:
        return None
    return replace_at(term, path, contract(subterm_at(term, path)))


TraceStatus = Literal["normal_form", "no_normal_form", "too_long"]


@dataclass(frozen=True)
class Trace:
    """A normal-order reduction sequence t0, t1, ..., and why it stopped.

    `status` is "normal_form" when the last term has no redex; "no_normal_form" when
    `max_steps` steps did not reach one; "too_long" when a term printed longer than
    `max_len` (the trace then ends at the last term that fitted).
    """

    terms: tuple[Term, ...]
    status: TraceStatus


def reduce_trace(term: Term, max_steps: int = 30, max_len: int = 120) -> Trace:
    """Reduce `term` in normal order for at most `max_steps` steps.

    Every kept term prints in at most `max_len` characters; the first term that does not
    stops the trace with status "too_long".
    """
    if len(print_term(term)) > max_len:
        return Trace((), "too_long")
    terms = [term]
    for _ in range(max_steps):
        nxt = step(terms[-1])
        if nxt is None:
            return Trace(tuple(terms), "normal_form")
        if len(print_term(nxt)) > max_len:
            return Trace(tuple(terms), "too_long")
        terms.append(nxt)
    status: TraceStatus = "normal_form" if find_redex(terms[-1]) is None else "no_normal_form"
    return Trace(tuple(terms), status)


def redex_span(term: Term) -> Span | None:
    """Character span of the leftmost-outermost redex in `print_term(term)`, or None."""
    path = find_redex(term)
    return None if path is None else render(term).spans[path]


# ----------------------------------------------------------------- alpha and numerals


def _nameless(term: Term, bound: tuple[str, ...] = ()) -> object:
    """De Bruijn form: bound variables become their binder depth, free ones keep names."""
    if isinstance(term, Var):
        for depth, name in enumerate(reversed(bound)):
            if name == term.name:
                return ("bound", depth)
        return ("free", term.name)
    if isinstance(term, Lam):
        return ("lam", _nameless(term.body, (*bound, term.var)))
    return ("app", _nameless(term.fn, bound), _nameless(term.arg, bound))


def alpha_equal(a: Term, b: Term) -> bool:
    """True when `a` and `b` differ only in the names of bound variables."""
    return _nameless(a) == _nameless(b)


def church(n: int) -> Term:
    """The Church numeral `\\f.\\x.f (f ... (f x))` with `n` applications of f."""
    body: Term = Var("x")
    for _ in range(n):
        body = App(Var("f"), body)
    return Lam("f", Lam("x", body))


def church_value(term: Term) -> int | None:
    """The number a Church numeral stands for (any bound names), or None for other terms."""
    if not (isinstance(term, Lam) and isinstance(term.body, Lam)):
        return None
    f, x, body = term.var, term.body.var, term.body.body
    if f == x:
        return None
    n = 0
    while isinstance(body, App) and body.fn == Var(f):
        n += 1
        body = body.arg
    return n if body == Var(x) else None
