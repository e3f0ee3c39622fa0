"""`llmkit lens`: where in the network a prediction forms, layer by layer.

The story: load the checkpoint (checked against the tokenizer and model shape), turn the
prompts into model inputs through the vocabulary check, get the tuned-lens translators
when asked (trained on the project's prepared data, or loaded from beside the checkpoint
and refused if they belong to other weights), compute one run per (lens, prompt), each
from its own forward pass, and hand the runs to the console table, the JSON report and the
HTML page. A span checkpoint gets the per-layer span view instead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from llmkit.config import Config
from llmkit.console import Log
from llmkit.errors import LlmkitError
from llmkit.inspect.lens import LensInput, LensSettings, lens_run
from llmkit.inspect.lens_report import (
    SCHEMA,
    VERSION,
    collect_nonfinite,
    console_lm,
    console_span,
    html_page,
    run_summary,
    validate_lens_report,
)
from llmkit.inspect.numerics import NonFinite, finite_or_none
from llmkit.inspect.report import dumps, header
from llmkit.inspect.tuned import (
    fingerprint,
    load_tuned_lens,
    save_tuned_lens,
    train_tuned_lens,
    tuned_lens_path,
    validation_kl,
)
from llmkit.tokenizer import EOS_ID, Tokenizer, check_token_ids


class LensError(LlmkitError):
    """`llmkit lens` was asked for something the checkpoint or the flags cannot give."""


@dataclass(frozen=True)
class LensOptions:
    """Everything `llmkit lens` was asked for (the CLI fills it from its flags)."""

    prompt: str
    target: str | None = None
    control_prompt: str | None = None
    control_target: str | None = None
    variants: tuple[str, ...] = ()  # NAME=TEXT
    lens: str = "logit"  # logit | tuned | both
    train_tuned: bool = False
    tuned_steps: int = 300
    tuned_lr: float = 1e-3
    settings: LensSettings = field(default_factory=LensSettings)
    flags_given: frozenset[str] = frozenset()  # settings the user set (the rest: defaults)
    heatmap: str = "entropy"
    checkpoint: Path | None = None
    json_path: Path | None = None
    html_path: Path | None = None


def run(cfg: Config, opts: LensOptions, *, echo: Log = print) -> dict[str, Any]:
    """Compute the lens report, print the table, write `--json` / `--html`; return it."""
    from llmkit.fsutil import atomic_write_text
    from llmkit.trainer.restore import load_trained

    _check_options(cfg, opts)
    cfg, tok, module, ckpt_path = load_trained(cfg, opts.checkpoint, log=echo)
    model = module.model
    token_text = tok.token_text
    notes: list[str] = []
    report = {
        **header(SCHEMA, VERSION),
        "checkpoint": _checkpoint_info(cfg, tok, model, ckpt_path),
        "settings": _settings(opts),
        "runs": [],
        "summary": [],
        "tuned_lens": None,
        "notes": notes,
        "nonfinite": [],
    }
    extra_nonfinite = NonFinite()
    if cfg.project.task == "span":
        runs = [_span_run(cfg, tok, model, opts, token_text)]
    else:
        inputs = _lm_inputs(cfg, tok, opts, notes)
        translate = None
        if opts.lens in ("tuned", "both") or opts.train_tuned:
            translate, report["tuned_lens"] = _tuned(
                cfg, tok, model, ckpt_path, report["checkpoint"]["fingerprint"], opts, echo,
                extra_nonfinite)
        lenses = {"logit": ["logit"], "tuned": ["tuned"], "both": ["logit", "tuned"]}[opts.lens]
        runs = [lens_run(model, inp, opts.settings, lens, token_text,
                         translate if lens == "tuned" else None)
                for lens in lenses for inp in inputs]
    report["runs"] = runs
    report["summary"] = [run_summary(r) for r in runs]
    report["nonfinite"] = collect_nonfinite(runs, extra_nonfinite)
    validate_lens_report(report)

    for r in runs:
        echo(console_span(r) if r["lens"] == "span" else console_lm(r))
        echo("")
    if report["tuned_lens"] is not None:
        echo(_kl_table(report["tuned_lens"]["val_kl_bits"], _layer_names(runs)))
    for note in notes:
        echo(f"note: {note}")
    if report["nonfinite"]:
        echo(f"warning: {len(report['nonfinite'])} non-finite values (NaN/Inf) met; they are "
             f"null in the report, e.g. at {report['nonfinite'][0]['where']}")
    if opts.json_path is not None:
        atomic_write_text(opts.json_path, dumps(report))
        echo(f"wrote {opts.json_path}")
    if opts.html_path is not None:
        atomic_write_text(opts.html_path, html_page(report, opts.heatmap))
        echo(f"wrote {opts.html_path}")
    return report


def _layer_names(runs: Sequence[dict[str, Any]]) -> list[str]:
    return [layer["name"] for layer in runs[0]["layers"]] if runs else []


# --------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------


def _check_options(cfg: Config, opts: LensOptions) -> None:
    problems = []
    if opts.lens not in ("logit", "tuned", "both"):
        problems.append(f"--lens must be logit, tuned or both, got {opts.lens!r}")
    if (opts.control_prompt is None) != (opts.control_target is None):
        problems.append("--control-prompt and --control-target go together")
    if opts.control_prompt is not None and opts.target is None:
        problems.append("a control needs --target too (the margin compares the control "
                        "target with it)")
    if opts.tuned_steps < 1:
        problems.append(f"--tuned-steps must be >= 1, got {opts.tuned_steps}")
    if cfg.project.task == "span":
        used = [flag for flag, on in (
            ("--lens tuned/both", opts.lens != "logit"), ("--train-tuned", opts.train_tuned),
            ("--control-prompt", opts.control_prompt is not None),
            ("--variant", bool(opts.variants))) if on]
        if used:
            problems.append(f"{', '.join(used)}: only for language-model checkpoints; a span "
                            f"checkpoint gets the per-layer span view (--target is the gold "
                            f"answer text)")
    if problems:
        raise LensError("llmkit lens: " + "; ".join(problems))


def _encode(tok: Tokenizer, text: str, flag: str) -> list[int]:
    ids = tok.encode(text)
    if not ids:
        raise LensError(f"{flag} {text!r} has no tokens; give some text")
    check_token_ids(ids, tok.vocab_size, source=f"{flag} {text[:40]!r}")
    return ids


def _lm_inputs(cfg: Config, tok: Tokenizer, opts: LensOptions,
               notes: list[str]) -> list[LensInput]:
    """The prompt, its variants and the control, each a separate input."""
    target = _first_token(tok, opts.target, "--target", notes)
    prompts = [("prompt", opts.prompt, "--prompt")]
    seen: set[str] = {"prompt", "control"}
    for spec in opts.variants:
        name, sep, text = spec.partition("=")
        name = name.strip()
        if not sep or not name or not text:
            raise LensError(f"--variant {spec!r}: expected NAME=TEXT")
        if name in seen:
            raise LensError(f"--variant {name!r}: the name is used twice (or is reserved)")
        seen.add(name)
        prompts.append((name, text, f"--variant {name}"))
    inputs = []
    for name, text, flag in prompts:
        ids = _encode(tok, text, flag)
        inputs.append(_input(cfg, name, text, ids, target, None, flag))
    if opts.control_prompt is not None:
        ids = _encode(tok, opts.control_prompt, "--control-prompt")
        control = _first_token(tok, opts.control_target, "--control-target", notes)
        inputs.append(_input(cfg, "control", opts.control_prompt, ids, control, target,
                             "--control-prompt"))
    return inputs


def _input(cfg: Config, name: str, text: str, ids: list[int], target: int | None,
           foil: int | None, flag: str) -> LensInput:
    # Training text is documents joined by EOS: EOS is what precedes a document's start.
    model_ids = (EOS_ID, *ids)
    if len(model_ids) > cfg.model.block_size:
        raise LensError(f"{flag} is {len(model_ids)} tokens (with the EOS that starts it), "
                        f"longer than model.block_size {cfg.model.block_size}; shorten it")
    return LensInput(name=name, text=text, ids=model_ids, prompt_ids=tuple(ids),
                     target=target, foil=foil)


def _first_token(tok: Tokenizer, text: str | None, flag: str,
                 notes: list[str]) -> int | None:
    if text is None:
        return None
    ids = _encode(tok, text, flag)
    if len(ids) > 1:
        notes.append(f"{flag} {text!r} is {len(ids)} tokens; the lens follows its first "
                     f"token {tok.decode(ids[:1])!r}")
    return ids[0]


# --------------------------------------------------------------------------------------
# Tuned lens
# --------------------------------------------------------------------------------------


def _tuned(cfg: Config, tok: Tokenizer, model, ckpt_path: Path, fp: str, opts: LensOptions,
           echo: Log, nf: NonFinite):
    """The translators (trained now or loaded) and the report's `tuned_lens` section."""
    path = tuned_lens_path(ckpt_path)
    if opts.train_tuned:
        train, val = _windows(cfg, tok)
        echo(f"training the tuned lens: {opts.tuned_steps} steps on the prepared training "
             f"data")
        lens = train_tuned_lens(model, train, opts.tuned_steps, lr=opts.tuned_lr, log=echo)
        kl = {"logit": validation_kl(model, val(), None), "tuned": validation_kl(model, val(),
                                                                              lens)}
        info = {"steps": opts.tuned_steps, "lr": opts.tuned_lr, "val_kl_bits": kl}
        save_tuned_lens(path, lens, fp, info)
        echo(f"saved the tuned lens to {path}")
    else:
        lens, info = load_tuned_lens(path, fp, ckpt_path)
    kl = info.get("val_kl_bits", {})
    section = {
        "path": str(path),
        "steps": info.get("steps"),
        "val_kl_bits": {name: finite_or_none(torch.tensor(values, dtype=torch.float64),
                                             f"tuned_lens.val_kl_bits.{name}", nf)
                        for name, values in kl.items()},
    }
    return lens, section


def _windows(cfg: Config, tok: Tokenizer):
    """Training batches (endless) and a maker of validation batches, from the cache."""
    from llmkit.data.lm import LMTrainWindows, LMValWindows
    from llmkit.data.prepare import load_prepared

    prepared = load_prepared(cfg, tok)
    bs = cfg.training.batch_size or 8
    train = (x for x, _ in LMTrainWindows(prepared.train, cfg.model.block_size, bs,
                                          cfg.project.seed, vocab_size=tok.vocab_size))
    val_set = LMValWindows(prepared.val, cfg.model.block_size, 4 * bs,
                           vocab_size=tok.vocab_size)

    def val():
        xs = [val_set[i][0] for i in range(len(val_set))]
        return [torch.stack(xs[i:i + bs]) for i in range(0, len(xs), bs)]
    return train, val


def _kl_table(kl: dict[str, list[float | None]], names: list[str]) -> str:
    lines = ["validation KL to the model's prediction (bits per token), per layer:",
             f"{'layer':>6} {'logit':>8} {'tuned':>8}"]
    for i, name in enumerate(names):
        vals = [kl.get(k, [None] * len(names))[i] for k in ("logit", "tuned")]
        lines.append(f"{name:>6} " + " ".join("     n/a" if v is None else f"{v:8.3f}"
                                              for v in vals))
    return "\n".join(lines)


# --------------------------------------------------------------------------------------
# Span checkpoints
# --------------------------------------------------------------------------------------


def _span_run(cfg: Config, tok: Tokenizer, model, opts: LensOptions,
              token_text: Callable[[int], str]) -> dict[str, Any]:
    from llmkit.data.windows import context_room, cut_window
    from llmkit.inspect.span_lens import span_lens_run

    text = opts.prompt
    text_ids, text_offsets = tok.encode_offsets(text)
    room = context_room(cfg.model.block_size, 0)
    if len(text_ids) > room:
        # Training and predict read such a text in several windows; the lens shows one
        # forward pass, so it takes texts that fit one window.
        raise LensError(f"--prompt has {len(text_ids)} tokens; the lens of a span checkpoint "
                        f"reads one window of at most {room} tokens (model.block_size "
                        f"{cfg.model.block_size} less BOS and EOS); shorten the prompt")
    window = cut_window(0, [], text_ids, text_offsets, None, 0, room)
    ids, offsets = window.ids, window.offsets
    check_token_ids(ids, tok.vocab_size, source=f"--prompt {text[:40]!r}")
    gold = None
    if opts.target is not None:
        start = text.find(opts.target)
        if start < 0 or not opts.target:
            raise LensError(f"--target {opts.target!r} does not occur in the prompt; for a "
                            f"span checkpoint it is the gold answer text")
        gold = (start, start + len(opts.target))
    return span_lens_run(model, ids, offsets, text, max_span_tokens=cfg.span.max_span_tokens,
                         nospan_threshold=cfg.span.nospan_threshold, gold=gold,
                         token_text=token_text)


# --------------------------------------------------------------------------------------
# Report pieces
# --------------------------------------------------------------------------------------


def _checkpoint_info(cfg: Config, tok: Tokenizer, model, ckpt_path: Path) -> dict[str, Any]:
    from llmkit.checkpoint import load_checkpoint

    step = load_checkpoint(ckpt_path).get("global_step")  # verified already: mmap only
    c = model.config
    return {
        "path": str(ckpt_path),
        "step": int(step) if isinstance(step, int) else None,
        "task": cfg.project.task,
        "tokenizer_hash": tok.hash,
        "fingerprint": fingerprint(model),
        "model": {"n_layer": c.n_layer, "n_head": c.n_head, "n_embd": c.n_embd,
                  "block_size": c.block_size, "vocab_size": c.vocab_size,
                  "causal": c.causal},
    }


def _settings(opts: LensOptions) -> dict[str, Any]:
    s = opts.settings
    values = {"top_k": s.top_k, "positions": s.positions, "copy_prob": s.copy_prob,
              "copy_margin": s.copy_margin, "copy_window": s.copy_window, "lens": opts.lens,
              "heatmap": opts.heatmap, "tuned_steps": opts.tuned_steps,
              "tuned_lr": opts.tuned_lr}
    return {k: {"value": v, "source": "flag" if k in opts.flags_given else "default"}
            for k, v in values.items()}


def options_from_flags(flags: dict[str, Any], given: frozenset[str]) -> LensOptions:
    """`LensOptions` from the CLI's flags (`given`: the flags set on the command line)."""
    try:
        settings = LensSettings(top_k=flags["top_k"], positions=flags["positions"],
                                copy_prob=flags["copy_prob"], copy_margin=flags["copy_margin"],
                                copy_window=flags["copy_window"])
    except ValueError as e:
        raise LensError(f"llmkit lens: {e}") from None
    return LensOptions(
        prompt=flags["prompt"], target=flags["target"],
        control_prompt=flags["control_prompt"], control_target=flags["control_target"],
        variants=tuple(flags["variants"]), lens=flags["lens_kind"],
        train_tuned=flags["train_tuned"], tuned_steps=flags["tuned_steps"],
        settings=settings, flags_given=frozenset("lens" if g == "lens_kind" else g
                                                 for g in given), heatmap=flags["heatmap"],
        checkpoint=flags["checkpoint"], json_path=flags["json_path"],
        html_path=flags["html_path"])
