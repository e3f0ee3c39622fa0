"""How big a model the data can train: tokens per parameter, per size preset.

A model with far more parameters than its data has tokens does not learn the language, it
learns the training text by heart (DESIGN.md, problem 3). This module computes, for each
preset in `config.PRESETS`, the real parameter counts (from the model code, with the
tokenizer's real vocabulary size) and the training tokens per parameter, and recommends
the largest preset that stays at or above `TARGET_TOKENS_PER_PARAM`.

Where the target comes from (docs/sizing.md has the longer story):

- Chinchilla (Hoffmann et al. 2022, "Training Compute-Optimal Large Language Models"):
  for a compute budget, the best model sees about 20 training tokens per parameter.
- Muennighoff et al. 2023 ("Scaling Data-Constrained Language Models"): when data is
  limited, repeating it for up to about 4 epochs is almost as good as fresh data; beyond
  that the value of each repetition decays, and after ~16 epochs more passes add almost
  nothing.
- So a practical floor is 20 / 4 = 5 unique training tokens per parameter: 20 tokens per
  parameter seen over 4 epochs. Below it, the run either stops short of what the model
  could learn or repeats the data until the model memorises it.

Tokens per parameter use the NON-EMBEDDING parameter count. Kaplan et al. 2020 ("Scaling
Laws for Neural Language Models") found that loss follows non-embedding parameters far
more cleanly than the total; an embedding row costs almost no compute and trains only on
the occurrences of its own token, so counting the rows would make a large tokenizer look
like a reason for more data (a vocabulary much larger than the data is its own problem,
reported by the pre-flight vocabulary check). At the scale Chinchilla studied the two
counts are nearly equal; at llmkit's `tiny` scale the embedding can be larger than the
rest of the model, and the total would hide how small the trunk really is.
"""

from __future__ import annotations

import codecs
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from llmkit.config import PRESETS
from llmkit.data.sources import BINARY_SUFFIXES, Document, document_of, file_format
from llmkit.data.windows import example_window_starts, special_tokens
from llmkit.errors import DataError
from llmkit.models import GPTConfig, SpanModel, count_parameters, param_counts

# Chinchilla's compute-optimal ratio of training tokens to parameters (Hoffmann et al.).
CHINCHILLA_TOKENS_PER_PARAM = 20.0
# Epochs of repeated data that are worth almost as much as new data (Muennighoff et al.).
USEFUL_EPOCHS = 4
# The floor the recommendation keeps: 20 tokens per parameter seen over 4 epochs.
TARGET_TOKENS_PER_PARAM = CHINCHILLA_TOKENS_PER_PARAM / USEFUL_EPOCHS
# Fewer training tokens than parameters: the model can store the data outright.
MEMORISE_TOKENS_PER_PARAM = 1.0

# `auto_size_for_data` has no trained tokenizer yet. Byte-level BPE on English text gives
# about 4 bytes per token (GPT-2's 50k vocabulary); the small vocabularies llmkit trains
# give fewer bytes per token, i.e. MORE tokens than this estimate, so it errs towards the
# smaller, safer preset.
BPE_BYTES_PER_TOKEN = 4.0
# Bytes read from the head of each file to measure its text share (JSON Lines) and its
# characters per byte (char kind), so the estimate costs the same on any corpus size.
SAMPLE_BYTES = 4 << 20
# The share of the data a new project trains on (data.val_fraction's default is held out).
TRAIN_SHARE = 0.9



@dataclass(frozen=True)
class PresetSize:
    """One row of the size table: a preset's shape, parameters and fit to the data."""

    name: str
    n_layer: int
    n_head: int
    n_embd: int
    block_size: int
    params: int  # every parameter, tied head counted once, with the real vocabulary
    non_embedding_params: int  # params minus the token and position embeddings
    tokens_per_param: float  # training tokens / non-embedding params
    verdict: str


@dataclass(frozen=True)
class SizeRecommendation:
    """The preset to train, why, and the regularisation that goes with it.

    `enough_data` is False when even the smallest preset is below the target: the preset
    is then the smallest one, with the strongest regularisation, and the fix is more data.
    """

    preset: str
    train_tokens: int
    vocab_size: int
    task: str
    tokens_per_param: float  # of the recommended preset
    dropout: float
    weight_decay: float
    enough_data: bool
    max_steps: int | None  # lm: optimizer steps of USEFUL_EPOCHS passes at the preset's batch
    table: list[PresetSize] = field(default_factory=list)

    @property
    def tokens_needed(self) -> int:
        """Training tokens the recommended preset needs to reach the target."""
        row = next(r for r in self.table if r.name == self.preset)
        return math.ceil(TARGET_TOKENS_PER_PARAM * row.non_embedding_params)

    def format(self) -> str:
        """The recommendation in a few lines (the table is `format_table`)."""
        lines = [f"recommended: model.size {self.preset} "
                 f"({format_ratio(self.tokens_per_param)} tokens per non-embedding "
                 f"parameter), model.dropout {self.dropout:g}, "
                 f"training.weight_decay {self.weight_decay:g}"]
        if self.max_steps is not None:
            lines.append(f"  training.max_steps: at most ~{self.max_steps:,} "
                         f"({USEFUL_EPOCHS} epochs at the preset's batch size); more "
                         f"passes over the same data mostly teach memorisation")
        if not self.enough_data:
            lines.append(f"  collect more data: even {self.preset} wants "
                         f"{self.tokens_needed:,} training tokens, the data has "
                         f"{self.train_tokens:,}; until then train {self.preset} with the "
                         f"regularisation above and fewer steps")
        return "\n".join(lines)


def model_params(gpt: GPTConfig, task: str = "lm") -> tuple[int, int]:
    """(total, non_embedding) parameters of the task's model, counted from the model code.

    The LM's head is tied to the token embedding (counted once, by `param_counts`); the span
    model adds its start/end head, counted from a `SpanModel` built on the meta device (no
    memory, no hand-typed formula).
    """
    if task == "span":
        with torch.device("meta"):
            return count_parameters(SpanModel(gpt))
    return param_counts(gpt)


def preset_gpt(name: str, vocab_size: int, task: str = "lm", *, bias: bool = False,
               pad_vocab_multiple: int = 1) -> GPTConfig:
    """The `GPTConfig` of a preset with a real vocabulary size."""
    p = PRESETS[name]
    return GPTConfig(vocab_size=vocab_size, n_layer=p["n_layer"], n_head=p["n_head"],
                     n_embd=p["n_embd"], block_size=p["block_size"], dropout=p["dropout"],
                     bias=bias, causal=task == "lm", pad_vocab_multiple=pad_vocab_multiple,
                     arch=p["arch"], tie_embeddings=p["tie_embeddings"])


def regularisation_for(tokens_per_param: float) -> tuple[float, float]:
    """(dropout, weight_decay) for a model that sees this many tokens per parameter.

    With enough data for one compute-optimal pass (>= 20 tokens/param) no dropout is needed
    (GPT-3 and Chinchilla train without it); with a few epochs of repetition a little
    dropout helps; below the target the model will see each token many times, so dropout
    0.2 (nanoGPT's setting for 1 MB of Shakespeare) and, below one token per parameter,
    a stronger weight decay as well.
    """
    if tokens_per_param >= CHINCHILLA_TOKENS_PER_PARAM:
        return 0.0, 0.1
    if tokens_per_param >= TARGET_TOKENS_PER_PARAM:
        return 0.1, 0.1
    if tokens_per_param >= MEMORISE_TOKENS_PER_PARAM:
        return 0.2, 0.1
    return 0.2, 0.2


def size_table(train_tokens: int, vocab_size: int, task: str = "lm", *, bias: bool = False,
               pad_vocab_multiple: int = 1) -> list[PresetSize]:
    """Every preset with its parameters, tokens per parameter and verdict, smallest first."""
    if train_tokens < 0:
        raise ValueError(f"train_tokens must be >= 0, got {train_tokens}")
    counted = []
    for name in PRESETS:
        gpt = preset_gpt(name, vocab_size, task, bias=bias, pad_vocab_multiple=pad_vocab_multiple)
        total, non_emb = model_params(gpt, task)
        counted.append((name, gpt, total, non_emb, train_tokens / non_emb))
    counted.sort(key=lambda c: c[3])
    fitting = [c[0] for c in counted if c[4] >= TARGET_TOKENS_PER_PARAM]
    best = fitting[-1] if fitting else None
    rows = []
    for name, gpt, total, non_emb, tpp in counted:
        rows.append(PresetSize(name=name, n_layer=gpt.n_layer, n_head=gpt.n_head,
                               n_embd=gpt.n_embd, block_size=gpt.block_size, params=total,
                               non_embedding_params=non_emb, tokens_per_param=tpp,
                               verdict=_verdict(tpp, name == best, best)))
    return rows


def _verdict(tpp: float, is_best: bool, best: str | None) -> str:
    if tpp < MEMORISE_TOKENS_PER_PARAM:
        return "data-starved: fewer tokens than parameters; memorises within a few passes"
    if tpp < TARGET_TOKENS_PER_PARAM:
        return "data-starved: likely to memorise on long runs"
    if is_best:
        return "fits"
    return f"undersized: the data supports {best}"


def recommend_preset(train_tokens: int, vocab_size: int, task: str = "lm", *,
                     bias: bool = False, pad_vocab_multiple: int = 1) -> SizeRecommendation:
    """The largest preset with at least `TARGET_TOKENS_PER_PARAM` tokens per parameter.

    The target (5 unique training tokens per non-embedding parameter) is Chinchilla's 20
    tokens per parameter (Hoffmann et al. 2022) reached over the 4 epochs that repeated
    data stays almost as useful as new data for (Muennighoff et al. 2023). When even the
    smallest preset is below it, that preset is recommended with stronger regularisation
    and `enough_data=False` ("collect more data").

    Args:
        train_tokens: tokens in the training split (prepared data, or an estimate).
        vocab_size: the tokenizer's real size (it changes the total, not the ratio).
        task: "lm" or "span" (the span model has a bidirectional trunk and its own head).

    Example:
        >>> recommend_preset(100_000, 2000).preset
        'tiny'
    """
    table = size_table(train_tokens, vocab_size, task, bias=bias,
                       pad_vocab_multiple=pad_vocab_multiple)
    fitting = [r for r in table if r.tokens_per_param >= TARGET_TOKENS_PER_PARAM]
    row = fitting[-1] if fitting else table[0]
    dropout, weight_decay = regularisation_for(row.tokens_per_param)
    max_steps = None
    if task == "lm":
        tokens_per_step = PRESETS[row.name]["batch_size"] * row.block_size
        max_steps = max(1, math.ceil(USEFUL_EPOCHS * train_tokens / tokens_per_step))
    return SizeRecommendation(preset=row.name, train_tokens=train_tokens,
                              vocab_size=vocab_size, task=task,
                              tokens_per_param=row.tokens_per_param, dropout=dropout,
                              weight_decay=weight_decay, enough_data=bool(fitting),
                              max_steps=max_steps, table=table)


def format_table(table: list[PresetSize], current: str | None = None) -> str:
    """The size table as aligned text; `current` marks the configured preset with `*`."""
    head = (f"  {'preset':<8} {'layers':>6} {'width':>6} {'context':>7} {'params':>8} "
            f"{'non-emb':>8} {'tokens/param':>12}  verdict")
    lines = [head]
    for r in table:
        mark = "*" if r.name == current else " "
        lines.append(f"{mark} {r.name:<8} {r.n_layer:>6} {r.n_embd:>6} {r.block_size:>7} "
                     f"{_millions(r.params):>8} {_millions(r.non_embedding_params):>8} "
                     f"{format_ratio(r.tokens_per_param):>12}  {r.verdict}")
    return "\n".join(lines)


def _millions(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n < 10_000_000 else f"{n / 1e6:.1f}M"


def format_ratio(x: float) -> str:
    """Tokens per parameter with three significant digits (0.127, 5.08, 127, 1,270)."""
    if x < 0.001:
        return "<0.001"
    return f"{x:.3g}" if x < 1000 else f"{x:,.0f}"


# --------------------------------------------------------------------------------------
# `llmkit new --size auto`: an estimate before any tokenizer exists
# --------------------------------------------------------------------------------------


def estimate_train_tokens(data_path: Path | Sequence[Path], kind: str = "bpe",
                          text_field: str = "text") -> int:
    """Training tokens in `data_path` (a file or a folder, or several), estimated without a
    tokenizer.

    bpe: text bytes / `BPE_BYTES_PER_TOKEN` (4; llmkit's smaller vocabularies give more
    tokens than that, so the estimate is low and the preset it picks is on the safe side).
    char: one token per character. JSON Lines (as `llmkit prepare` tells them) count only
    their `text_field` (the share of text in each file is measured on its first
    `SAMPLE_BYTES`). `TRAIN_SHARE` of the total
    is kept, as the default validation split holds out the rest.

    Raises:
        DataError: the path does not exist or holds no data file.
    """
    paths = [Path(data_path)] if isinstance(data_path, (str, Path)) else list(data_path)
    files = [f for path in paths for f in _data_files(Path(path))]
    if not files:
        raise DataError(f"{data_path}: no data files found (plain text or .jsonl); give a "
                        f"file or a folder holding them")
    text_bytes = 0.0
    chars = 0.0
    for f in files:
        b, c = _text_share(f, text_field)
        text_bytes += b
        chars += c
    tokens = chars if kind == "char" else text_bytes / BPE_BYTES_PER_TOKEN
    return int(tokens * TRAIN_SHARE)


def recommend_for_data(data_path: Path | Sequence[Path], *, kind: str = "bpe",
                       task: str = "lm") -> SizeRecommendation:
    """What `llmkit new --size auto --data PATH` writes for the data at `data_path`.

    The tokens are estimated by `estimate_train_tokens` (no tokenizer is trained); the
    choice is `recommend_preset`'s. The vocabulary size does not change tokens per
    non-embedding parameter, so a placeholder size is used.

    Example:
        >>> recommend_for_data(Path("data/train.txt")).preset
        'tiny'
    """
    tokens = estimate_train_tokens(data_path, kind)
    return recommend_preset(tokens, vocab_size=256, task=task)


def auto_size_for_data(data_path: Path | Sequence[Path], *, kind: str = "bpe",
                       task: str = "lm") -> str:
    """The preset name of `recommend_for_data`."""
    return recommend_for_data(data_path, kind=kind, task=task).preset


def _data_files(path: Path) -> Iterable[Path]:
    if not path.exists():
        raise DataError(f"{path} does not exist; give a data file or a folder of them")
    if path.is_file():
        yield path
        return
    for p in sorted(path.rglob("*")):
        rel = p.relative_to(path).parts
        if (p.is_file() and not any(part.startswith(".") for part in rel)
                and not p.name.lower().endswith(BINARY_SUFFIXES)):
            yield p


def _text_share(path: Path, text_field: str) -> tuple[float, float]:
    """(text bytes, text characters) of a file, scaled up from its first SAMPLE_BYTES."""
    size = path.stat().st_size
    if size == 0:
        return 0.0, 0.0
    with open(path, "rb") as fh:
        head = fh.read(SAMPLE_BYTES)
    if file_format(path, "auto") == "jsonl":
        lines = head.splitlines()
        if len(head) == SAMPLE_BYTES and len(lines) > 1:
            lines = lines[:-1]  # the last line of a cut sample is incomplete
        sampled = sum(len(line) + 1 for line in lines)
        text = "".join(_jsonl_text(line, text_field) for line in lines)
    else:
        sampled = len(head)
        text = codecs.getincrementaldecoder("utf-8")(errors="replace").decode(head)
    if sampled == 0:
        return 0.0, 0.0
    scale = size / sampled
    return len(text.encode("utf-8")) * scale, len(text) * scale


def _jsonl_text(line: bytes, text_field: str) -> str:
    try:
        obj = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return ""
    doc = document_of("", obj, text_field) if isinstance(obj, dict) else None
    return doc.text if isinstance(doc, Document) else ""


# --------------------------------------------------------------------------------------
# Span examples: how long they are, and the context that holds them
# --------------------------------------------------------------------------------------

# Contexts a span project is offered: powers of two up to the base preset's.
CONTEXTS = (128, 256, 512, 1024)
# The share of examples a chosen context should hold in one window; longer ones are read
# in overlapping windows, which costs compute but loses nothing.
COVER = "p90"


def estimate_example_lengths(data_path: Path | Sequence[Path], kind: str = "bpe") -> list[int]:
    """Tokens per span example (question and context with their special tokens), estimated
    without a tokenizer from the first `SAMPLE_BYTES` of each JSON Lines file.

    bpe: UTF-8 bytes / `BPE_BYTES_PER_TOKEN`; char: characters. Small llmkit vocabularies
    give more tokens than 4 bytes each, so real lengths run longer than this estimate;
    `llmkit size` reports the real ones once the tokenizer exists.
    """
    paths = [Path(data_path)] if isinstance(data_path, (str, Path)) else list(data_path)
    lengths = []
    for path in paths:
        for f in _data_files(Path(path)):
            if file_format(f, "auto") != "jsonl":
                continue
            with open(f, "rb") as fh:
                head = fh.read(SAMPLE_BYTES)
            lines = head.splitlines()
            if len(head) == SAMPLE_BYTES and len(lines) > 1:
                lines = lines[:-1]
            for line in lines:
                text = _jsonl_text(line, "text")
                if not text:
                    continue
                n = len(text) if kind == "char" else len(text.encode("utf-8")) / \
                    BPE_BYTES_PER_TOKEN
                lengths.append(math.ceil(n) + special_tokens(b'"question"' in line))
    return lengths


def choose_context(p: dict[str, int]) -> int:
    """The smallest of `CONTEXTS` that holds the `COVER` (90th percentile) example in one
    window; the largest when even that is too short (the rest is read in windows)."""
    return next((c for c in CONTEXTS if c >= p[COVER]), CONTEXTS[-1])


def windows_for(n_tokens: int, block_size: int, stride: int | None = None) -> int:
    """Windows a text of `n_tokens` tokens (special tokens included, no question) takes."""
    n_context = max(0, n_tokens - special_tokens(False))
    return len(example_window_starts(n_context, 0, block_size, stride))


def context_advice(p: dict[str, int], block_size: int, n_longer: int | None = None,
                   n_examples: int | None = None, stride: int | None = None) -> list[str]:
    """Lines saying how a context of `block_size` tokens fits examples of these lengths:
    how many fit one window, how many windows the long ones take, and the context that
    would hold 90% of them whole."""
    lines = []
    fit = ""
    if n_longer is not None and n_examples:
        fit = f"{1 - n_longer / n_examples:.0%} of examples fit one window; "
    lines.append(f"model.block_size {block_size}: {fit}the p90 example takes "
                 f"{windows_for(p['p90'], block_size, stride)} window(s), the longest "
                 f"{windows_for(p['max'], block_size, stride)}")
    best = choose_context(p)
    if block_size < p[COVER] and best > block_size:
        lines.append(f"  model.block_size {best} would hold 90% of the examples in one "
                     f"window (a longer context costs more per step; windows lose nothing)")
    return lines
