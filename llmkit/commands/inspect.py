"""`llmkit inspect`: a generation with per-step, per-layer telemetry and health flags.

The story: check the flags, load the checkpoint without Lightning (checked against the
tokenizer and model shape), turn the prompt into model input through the vocabulary check,
settle the thresholds (defaults scaled to the vocabulary, flags, or `--calibrate` on the
validation data), generate with telemetry exactly as `llmkit generate` samples, decide the
health flags, and hand one report to the console, the JSON file, the HTML page and
TensorBoard. `--check` validates a report file; `--show` renders one.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch

from llmkit.config import Config
from llmkit.errors import LlmkitError
from llmkit.inference import Trained
from llmkit.inspect.calibrate import Calibration, calibrate
from llmkit.inspect.health import Thresholds, assess, collapsed_counts
from llmkit.inspect.inspect_page import html_page
from llmkit.inspect.inspect_report import (
    SCHEMA,
    VERSION,
    console,
    read_inspect_report,
    validate_inspect_report,
)
from llmkit.inspect.numerics import NonFinite
from llmkit.inspect.report import dumps, header
from llmkit.inspect.telemetry import Sampling, inspect_generation, to_report
from llmkit.tokenizer import EOS_ID, check_token_ids

Echo = Callable[[str], None]
CALIBRATION_WINDOWS = 256  # "a few hundred" validation windows
CALIBRATION_BATCH = 16


class InspectError(LlmkitError):
    """`llmkit inspect` was asked for something the flags or the checkpoint cannot give."""


@dataclass(frozen=True)
class InspectOptions:
    """Everything `llmkit inspect` was asked for (the CLI fills it from its flags)."""

    prompt: str
    sampling: Sampling = field(default_factory=Sampling)
    seed: int | None = None
    device: str = "auto"
    calibrate: bool = False
    thresholds: Thresholds = field(default_factory=Thresholds)
    thresholds_given: frozenset[str] = frozenset()  # thresholds set by flags
    checkpoint: Path | None = None
    json_path: Path | None = None
    html_path: Path | None = None
    tensorboard: bool = False


def run(cfg: Config, opts: InspectOptions, *, echo: Echo = print,
        log: Echo = print) -> dict[str, Any]:
    """Inspect one generation; print it, write the requested files; return the report."""
    from llmkit.fsutil import atomic_write_text
    from llmkit.inference import load_model, resolve_device

    if cfg.project.task != "lm":
        raise InspectError("`llmkit inspect` needs a language-model project (project.task: "
                           "lm); span checkpoints can be looked at with `llmkit lens`")
    run_dir = _tensorboard_dir(cfg) if opts.tensorboard else None
    dev = resolve_device(opts.device)
    trained = load_model(cfg, opts.checkpoint, log=log)
    trained.model.to(dev)
    report = inspect_trained(trained, opts, log=log)
    echo(console(report))
    _write(report, opts.json_path, opts.html_path, echo, atomic_write_text)
    if run_dir is not None:
        from llmkit.inspect.tensorboard import write_tensorboard

        tags = write_tensorboard(run_dir, report)
        echo(f"wrote {len(tags)} inspect/ series to TensorBoard in {run_dir}")
    return report


def inspect_trained(trained: Trained, opts: InspectOptions, *,
                    log: Echo = print) -> dict[str, Any]:
    """The validated report of one generation from a loaded model (on its device; hooks
    planted on its blocks act as in any forward pass)."""
    from llmkit.inference import autocast, inference_dtype

    model, tok = trained.model, trained.tok
    dev = next(model.parameters()).device
    ids = _prompt_ids(model.config.block_size, tok, opts.prompt)
    calibration = None
    gen = torch.Generator(device=dev).manual_seed(opts.seed) if opts.seed is not None else None
    # calibration measures in the precision the generation runs in
    with autocast(dev, inference_dtype(trained.cfg.training.precision, dev)):
        if opts.calibrate:
            calibration = calibrate(model, _val_batches(trained.cfg, tok), opts.thresholds)
            log(f"calibrated {', '.join(calibration.calibrated) or 'nothing'} on "
                f"{calibration.windows} validation windows ({calibration.positions} positions)")
        thresholds = _thresholds(opts, calibration)
        sampling = replace(opts.sampling, loop_period=thresholds.loop_period)
        generation = inspect_generation(model, ids, sampling, generator=gen, eos_id=EOS_ID)

    nf = NonFinite()
    prompt, steps = to_report(generation, tok.token_text, nf)
    for step in steps:
        step["collapsed_heads"] = collapsed_counts(step, thresholds)
    shape = model.config
    report = {
        **header(SCHEMA, VERSION),
        "checkpoint": {
            "path": str(trained.path), "step": trained.step, "tokenizer_hash": tok.hash,
            "model": {k: v for k, v in asdict(shape).items()
                      if v is None or isinstance(v, (int, float, bool, str))}},
        "settings": _settings(opts, sampling, dev, thresholds, calibration, shape.vocab_size),
        "prompt": prompt,
        "text": {"prompt": opts.prompt,
                 "generated": tok.decode([t for t in generation.tokens if t != EOS_ID])},
        "stopped": generation.stopped,
        "steps": steps,
        "health": {"flags": [f.to_json() for f in assess(
            steps, thresholds, n_layer=shape.n_layer, vocab_size=shape.vocab_size)]},
        "nonfinite": nf.entries,
    }
    validate_inspect_report(report)
    return report


def check(path: Path, *, echo: Echo = print) -> dict[str, Any]:
    """`--check FILE`: validate a report (any version this llmkit reads); say what it is."""
    report, version = read_inspect_report(path)
    flags = report["health"]["flags"]
    echo(f"{path}: a valid {SCHEMA} report (version {version}), {len(report['steps'])} steps, "
         f"{len(flags)} flag(s), {len(report['nonfinite'])} non-finite value(s)")
    return report


def show(path: Path, html_path: Path | None, *, echo: Echo = print) -> dict[str, Any]:
    """`--show FILE`: print a report as `llmkit inspect` does, and render it with --html."""
    from llmkit.fsutil import atomic_write_text

    report, _ = read_inspect_report(path)
    echo(console(report))
    _write(report, None, html_path, echo, atomic_write_text)
    return report


def _write(report: dict[str, Any], json_path: Path | None, html_path: Path | None,
           echo: Echo, write: Callable[[Path, str], None]) -> None:
    if json_path is not None:
        write(json_path, dumps(report))
        echo(f"wrote {json_path}")
    if html_path is not None:
        write(html_path, html_page(report))
        echo(f"wrote {html_path}")


# --------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------


def check_options(opts: InspectOptions) -> None:
    """Every problem with the flags at once, before any checkpoint is read."""
    s = opts.sampling
    problems = []
    if not opts.prompt:
        problems.append("--prompt is empty; give some text")
    if s.max_new_tokens < 1:
        problems.append(f"--max-new-tokens must be >= 1, got {s.max_new_tokens}")
    if not (s.temperature >= 0 and math.isfinite(s.temperature)):
        problems.append(f"--temperature must be >= 0, got {s.temperature}")
    if s.top_k is not None and s.top_k < 1:
        problems.append(f"--top-k must be >= 1, got {s.top_k}")
    if s.report_top < 1:
        problems.append(f"--report-top must be >= 1, got {s.report_top}")
    if problems:
        raise InspectError("llmkit inspect: " + "; ".join(problems))


def _prompt_ids(block_size: int, tok, prompt: str) -> list[int]:
    # Training text is documents joined by EOS, so EOS is what precedes a document's start.
    ids = [EOS_ID, *tok.encode(prompt)]
    if len(ids) < 2:
        raise InspectError(f"--prompt {prompt!r} has no tokens; give some text")
    check_token_ids(ids, tok.vocab_size, source=f"--prompt {prompt[:40]!r}")
    if len(ids) > block_size:
        raise InspectError(f"--prompt is {len(ids)} tokens (with the EOS that starts it), "
                           f"longer than model.block_size {block_size}; shorten it "
                           f"(the prompt analysis needs all of it in one window)")
    return ids


def _val_batches(cfg: Config, tok):
    """Up to CALIBRATION_WINDOWS validation windows from the prepared cache, in batches."""
    from torch.utils.data import DataLoader

    from llmkit.data.cache import load_prepared
    from llmkit.data.lm import LMValWindows

    prepared = load_prepared(cfg, tok)
    windows = LMValWindows(prepared.val, cfg.model.block_size, CALIBRATION_WINDOWS,
                           vocab_size=tok.vocab_size)
    for x, _ in DataLoader(windows, batch_size=CALIBRATION_BATCH):
        yield x  # calibrate moves it to the model's device


def _thresholds(opts: InspectOptions, calibration: Calibration | None) -> Thresholds:
    """Flags win over calibration, calibration over defaults."""
    if calibration is None:
        return opts.thresholds
    values = asdict(calibration.thresholds)
    values.update({k: getattr(opts.thresholds, k) for k in opts.thresholds_given})
    return Thresholds(**values)


def _settings(opts: InspectOptions, sampling: Sampling, dev: torch.device,
              th: Thresholds, calibration: Calibration | None,
              vocab_size: int) -> dict[str, Any]:
    calibrated = set(calibration.calibrated) if calibration is not None else set()
    thresholds: dict[str, Any] = {}
    for f in fields(Thresholds):
        source = ("flag" if f.name in opts.thresholds_given
                  else "calibrated" if f.name in calibrated else "default")
        thresholds[f.name] = {"value": getattr(th, f.name), "source": source}
    thresholds["entropy_share"]["bits"] = th.entropy_share * math.log2(vocab_size)
    return {
        "prompt": opts.prompt, "max_new_tokens": sampling.max_new_tokens,
        "temperature": sampling.temperature, "top_k": sampling.top_k, "seed": opts.seed,
        "attention": sampling.attention, "device": dev.type,
        "report_top": sampling.report_top, "thresholds": thresholds,
        "calibration": calibration.to_json() if calibration is not None else None,
    }


def _tensorboard_dir(cfg: Config) -> Path:
    from llmkit.checkpoint import run_versions

    runs = run_versions(cfg)
    if not runs:
        raise InspectError("--tensorboard: this project has no run folder yet (runs/<name>/"
                           "version_N); train first with `llmkit train`")
    return runs[-1]


def options_from_flags(flags: dict[str, Any], given: frozenset[str]) -> InspectOptions:
    """`InspectOptions` from the CLI's flags (`given`: the flags set on the command line)."""
    try:
        thresholds = Thresholds(**{name: flags[name] for name in Thresholds.names()})
    except ValueError as e:
        raise InspectError(f"llmkit inspect: {e}") from None
    opts = InspectOptions(
        prompt=flags["prompt"],
        sampling=Sampling(max_new_tokens=flags["max_new_tokens"],
                          temperature=flags["temperature"], top_k=flags["top_k"],
                          attention=not flags["no_attention"],
                          report_top=flags["report_top"]),
        seed=flags["seed"], device=flags["device"], calibrate=flags["calibrate"],
        thresholds=thresholds,
        thresholds_given=frozenset(g for g in given if g in Thresholds.names()),
        checkpoint=flags["checkpoint"], json_path=flags["json_path"],
        html_path=flags["html_path"], tensorboard=flags["tensorboard"])
    check_options(opts)
    return opts
