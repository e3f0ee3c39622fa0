"""`llmkit smoke`: one forward and backward pass of the configured model, before training.

It catches the failures that otherwise surface an hour into a run: ids outside the
vocabulary (DESIGN.md, problem 2: the ids are drawn from the tokenizer's real size and
checked before they reach the model), a broken initialisation (at initialisation an LM's
loss must be close to ln V, the loss of a uniform guess over V tokens; a span head's close
to ln T per head, a uniform guess over T positions), and a model that does not fit in
memory or is far slower than expected.

Only the tokenizer is needed (it is trained when missing); no prepared data, no optimizer
step: the weights are never changed.
"""

from __future__ import annotations

import json
import math
import sys
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.nn import functional as F

from llmkit.config import Config
from llmkit.console import Log
from llmkit.errors import LlmkitError
from llmkit.metrics.lm import bits_per_token, perplexity
from llmkit.precision import matmul_dtype, resolve_precision
from llmkit.tokenizer import check_token_ids

try:
    import resource  # POSIX only
except ImportError:  # pragma: no cover - Windows
    resource = None  # type: ignore[assignment]


# How far the loss at initialisation may be from its expected value (ln V, or ln T per span
# head) before it is called an initialisation bug: GPT-2's N(0, 0.02) init gives logits
# of std ~0.02 * sqrt(n_embd) (0.2-0.6 for the presets), i.e. a loss within ~2% of ln V.
INIT_TOLERANCE = 0.10


@dataclass
class SmokeReport:
    """What one forward/backward pass showed; `to_dict()` for --json, `format()` for people.

    For span projects `ce` is the span loss (mean of the start and end cross-entropies),
    `expected_ce` is ln T and `per_token_losses` holds one loss per example.
    """

    task: str
    size: str  # model.size
    device: str
    precision: str
    vocab_size: int
    params: int
    non_embedding_params: int
    batch_size: int
    seq_len: int
    ce: float  # mean loss on the batch's targets (random ids, or the text's next tokens)
    expected_ce: float
    init_ce: float  # loss against a uniform target: what the init check compares
    per_token_losses: list[list[float]] | list[float]
    seconds_per_step: float
    peak_memory_mb: float
    memory_note: str  # what peak_memory_mb measures
    source: str  # where the ids came from
    notes: list[str] = field(default_factory=list)

    @property
    def ppl(self) -> float:
        return perplexity(self.ce)

    @property
    def bits_per_token(self) -> float:
        return bits_per_token(self.ce)

    @property
    def init_error(self) -> float:
        """|init_ce - expected| / expected: how far the logits are from a uniform guess."""
        return abs(self.init_ce - self.expected_ce) / self.expected_ce

    @property
    def init_ok(self) -> bool:
        return math.isfinite(self.init_ce) and self.init_error <= INIT_TOLERANCE

    @property
    def message(self) -> str:
        """The verdict on the loss at initialisation, in one line."""
        what = "ln(T) per head" if self.task == "span" else f"ln({self.vocab_size})"
        off = f"{self.init_error:.1%} off" if math.isfinite(self.init_ce) else "not finite"
        head = f"ce {self.init_ce:.4f} vs expected {what} = {self.expected_ce:.4f} ({off}"
        if self.init_ok:
            return f"{head}): ok"
        return (f"{head}, more "
                f"than {INIT_TOLERANCE:.0%}): likely initialisation bug (the logits at "
                f"initialisation should be close to uniform: check the weight init, the "
                f"head and its tying to the embedding)")

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "size": self.size,
            "device": self.device,
            "precision": self.precision,
            "vocab_size": self.vocab_size,
            "params": self.params,
            "non_embedding_params": self.non_embedding_params,
            "batch_size": self.batch_size,
            "seq_len": self.seq_len,
            "ce": self.ce,
            "ppl": self.ppl,
            "bits_per_token": self.bits_per_token,
            "expected_ce": self.expected_ce,
            "init_ce": self.init_ce,
            "init_ok": self.init_ok,
            "message": self.message,
            "per_token_losses": self.per_token_losses,
            "seconds_per_step": self.seconds_per_step,
            "peak_memory_mb": self.peak_memory_mb,
            "memory_note": self.memory_note,
            "source": self.source,
            "notes": list(self.notes),
        }

    def format(self) -> str:
        unit = "example" if self.task == "span" else "sequence"
        unit += "" if self.batch_size == 1 else "s"
        lines = [
            f"smoke: {self.task} model ({self.size}) on {self.device} ({self.precision}), "
            f"{self.source}",
            f"  {'parameters':<12} {self.params:,} ({self.non_embedding_params:,} "
            f"non-embedding), vocabulary {self.vocab_size:,}",
            f"  {'batch':<12} {self.batch_size} {unit} x {self.seq_len} tokens",
            f"  {'loss':<12} {self.ce:.4f} nats (ppl {self.ppl:.1f}, "
            f"{self.bits_per_token:.2f} bits/token)",
            f"  {'at init':<12} {self.message}",
            f"  {'step':<12} {self.seconds_per_step:.3f} s forward + backward",
            f"  {'peak memory':<12} {self.peak_memory_mb:.1f} MB ({self.memory_note})",
        ]
        lines.extend(f"  note: {n}" for n in self.notes)
        return "\n".join(lines)


def run_smoke(cfg: Config, batch_size: int = 4, seq_len: int | None = None,
              text: str | None = None, *, steps: int = 2, log: Log = print) -> SmokeReport:
    """One forward and backward pass of the configured model on in-vocabulary ids.

    Args:
        cfg: the project config.
        batch_size: sequences (or span examples) in the batch; ignored with `text`.
        seq_len: tokens per sequence; default and maximum `model.block_size`.
        text: run this text (`[BOS] text [EOS]`, cropped to the block size) instead of
            random ids drawn uniformly from the tokenizer's real vocabulary.
        steps: passes to time; the time reported is the last one's (the first pays for
            one-off set-up such as kernel selection and allocator growth).
        log: where tokenizer training messages go.

    Raises:
        LlmkitError: a bad batch size or sequence length, or an empty text.
        TokenIdError: an id outside the vocabulary (never clamped).
    """
    from llmkit.sizing import model_params
    from llmkit.trainer.build import build_module
    from llmkit.vocab_sync import ensure_tokenizer

    block = cfg.model.block_size
    task = cfg.project.task
    seq_len = block if seq_len is None else seq_len
    least = 3 if task == "span" else 1  # a span example needs BOS, one token and EOS
    if not least <= seq_len <= block:
        raise LlmkitError(f"--seq-len {seq_len}: allowed {least} to model.block_size ({block})")
    if batch_size < 1:
        raise LlmkitError(f"--batch-size {batch_size}: allowed an integer >= 1")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")

    cfg, tok = ensure_tokenizer(cfg, log=log)
    module = build_module(cfg, tok)
    model = module.model
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    module.to(device).train()  # as in training: dropout on; no optimizer, so no update
    precision = resolve_precision(cfg.training.precision)
    notes: list[str] = []
    gen = torch.Generator().manual_seed(cfg.project.seed)
    if text is None:
        batch = _random_batch(task, tok.vocab_size, batch_size, seq_len, gen)
        source = f"random ids in [0, {tok.vocab_size})"
    else:
        batch = _text_batch(task, tok, text, seq_len, gen, notes)
        source = f"--text ({len(text)} characters)"
    batch = {k: v.to(device) for k, v in batch.items()}
    expected = math.log(batch["ids"].size(1)) if task == "span" else math.log(tok.vocab_size)
    B, width = batch["ids"].shape
    T = width - 1 if task == "lm" else width  # an LM batch holds the shifted targets too

    memory = _PeakMemory(device)
    losses: torch.Tensor | None = None
    init_ce = math.nan
    seconds = 0.0
    # The training batch as the data module gives it: LM (inputs, shifted targets).
    train_batch = (batch["ids"][:, :-1], batch["ids"][:, 1:]) if task == "lm" else batch
    with memory:
        for i in range(steps):
            model.zero_grad(set_to_none=True)
            t0 = time.perf_counter()
            with _autocast(device, precision):
                loss = module.training_loss(train_batch)  # the loss training computes
            loss.backward()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds = time.perf_counter() - t0
            if i == 0:  # untimed: the per-item numbers of the report
                with torch.no_grad(), _autocast(device, precision):
                    per_item, uniform = _per_item_losses(task, model, batch)
                losses = per_item.float().cpu()
                init_ce = float(uniform)
    assert losses is not None
    total, non_emb = model_params(model.config, task)
    return SmokeReport(
        task=task, size=cfg.model.size, device=str(device), precision=precision,
        vocab_size=tok.vocab_size, params=total, non_embedding_params=non_emb,
        batch_size=B, seq_len=T, ce=float(losses.mean()), expected_ce=expected, init_ce=init_ce,
        per_token_losses=[[round(v, 4) for v in row] for row in losses.tolist()]
        if losses.dim() == 2 else [round(v, 4) for v in losses.tolist()],
        seconds_per_step=seconds, peak_memory_mb=memory.mb, memory_note=memory.note,
        source=source, notes=notes)


def _random_batch(task: str, vocab_size: int, batch_size: int, seq_len: int,
                  gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Ids drawn uniformly from [0, vocab_size): an LM batch needs one more for the target."""
    width = seq_len + 1 if task == "lm" else seq_len
    ids = torch.randint(0, vocab_size, (batch_size, width), generator=gen)
    check_token_ids(ids, vocab_size, source="smoke random ids")
    if task == "lm":
        return {"ids": ids}
    return _with_spans(ids, gen)


def _text_batch(task: str, tok: Any, text: str, seq_len: int, gen: torch.Generator,
                notes: list[str]) -> dict[str, torch.Tensor]:
    """`[BOS] text [EOS]` as a batch of one, cropped to what the model takes."""
    body = tok.encode(text)
    if not body:
        raise LlmkitError("--text is empty: give some text to run through the tokenizer")
    ids = [tok.bos_id, *body, tok.eos_id]
    # An LM window of seq_len positions needs seq_len + 1 ids (inputs and shifted targets).
    room = seq_len + 1 if task == "lm" else seq_len
    if len(ids) > room:
        notes.append(f"the text is {len(ids)} tokens with BOS and EOS; cropped to {room} "
                     f"(the model's block size is {seq_len})")
        ids = ids[:room - 1] + [tok.eos_id] if task == "span" else ids[:room]
    check_token_ids(ids, tok.vocab_size, source=f"smoke --text {text[:30]!r}")
    if task == "lm" and len(ids) < 2:
        raise LlmkitError("--text needs at least one token besides BOS and EOS")
    t = torch.tensor([ids], dtype=torch.long)
    return {"ids": t} if task == "lm" else _with_spans(t, gen)


def _with_spans(ids: torch.Tensor, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """A random gold span per example: exclusive end, inside `[1, T - 1)` (not BOS or EOS)."""
    B, T = ids.shape
    start = torch.randint(1, T - 1, (B,), generator=gen)  # a real token after BOS
    # end - 1 (the span's last token) lies in [start, T - 2], before EOS
    length = (torch.rand(B, generator=gen) * (T - 1 - start)).long() + 1
    return {"ids": ids, "mask": torch.ones_like(ids, dtype=torch.bool), "start": start,
            "end": start + length}


def _per_item_losses(task: str, model: torch.nn.Module, batch: dict[str, torch.Tensor]
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """(per-item cross-entropies, cross-entropy against a uniform target).

    Per-item losses are per token (B, T) for an LM, per example (B,) for spans (the mean
    of the start and end heads, without label smoothing: what ln V and ln T predict). The
    uniform-target loss (logsumexp minus the mean logit, averaged) is the expected loss
    over every possible target: it tests "are the logits close to uniform?" without the
    noise of a few sampled targets (a span batch of one text has just two).
    """
    if task == "lm":
        x, y = batch["ids"][:, :-1], batch["ids"][:, 1:]
        logits, _ = model(x, all_logits=True)
        logits = logits.float()  # (B, T, V)
        per_token = F.cross_entropy(logits.transpose(1, 2), y, reduction="none")  # (B, T)
        return per_token, (logits.logsumexp(-1) - logits.mean(-1)).mean()
    mask = batch["mask"]
    start_logits, end_logits = model(batch["ids"], mask)
    s = F.cross_entropy(start_logits.float(), batch["start"], reduction="none")
    e = F.cross_entropy(end_logits.float(), batch["end"] - 1, reduction="none")
    uniform = torch.stack([_uniform_span_ce(h.float(), mask)
                           for h in (start_logits, end_logits)]).mean()
    return (s + e) / 2, uniform  # per example (B,)


def _uniform_span_ce(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of the cross-entropy against a uniform target on real positions."""
    logits = logits.masked_fill(~mask, float("-inf"))  # (B, T)
    mean_real = logits.masked_fill(~mask, 0.0).sum(-1) / mask.sum(-1)
    return (logits.logsumexp(-1) - mean_real).mean()


def _autocast(device: torch.device, precision: str) -> AbstractContextManager[Any]:
    """The autocast that training uses for `precision` (none for 32-bit)."""
    dtype = matmul_dtype(precision)
    return nullcontext() if dtype == torch.float32 else torch.autocast(device.type, dtype=dtype)


class _PeakMemory:
    """Peak memory of the passes: CUDA's max_memory_allocated, or on CPU the growth of the
    process's peak resident set (getrusage's ru_maxrss), which only shows memory beyond the
    process's earlier peak, so it is a lower bound."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.mb = 0.0
        if device.type == "cuda":
            self.note = "CUDA max_memory_allocated"
        else:
            self.note = "CPU: growth of the process's peak RSS (getrusage), a lower bound"
        self._start = 0

    def __enter__(self) -> _PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self._start = _max_rss_bytes()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            self.mb = torch.cuda.max_memory_allocated(self.device) / 2**20
        else:
            self.mb = max(0, _max_rss_bytes() - self._start) / 2**20


def _max_rss_bytes() -> int:
    if resource is None:
        return 0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024  # Linux reports kilobytes


def run(cfg: Config, *, batch_size: int, seq_len: int | None, text: str | None, as_json: bool,
        echo: Log, log: Log) -> None:
    """Run the smoke pass; the report goes to `echo`, tokenizer messages to `log`."""
    report = run_smoke(cfg, batch_size=batch_size, seq_len=seq_len, text=text, log=log)
    echo(json.dumps(report.to_dict(), indent=2) if as_json else report.format())
