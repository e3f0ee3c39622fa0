"""The callbacks every training run has, in the order they must run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import lightning as L

from llmkit.config import Config
from llmkit.console import Log
from llmkit.models import GPTConfig
from llmkit.precision import matmul_dtype
from llmkit.sizing import model_params
from llmkit.tokenizer import Tokenizer
from llmkit.trainer.build import flops_per_token, resolve_precision
from llmkit.trainer.callbacks.checkpointing import LastCheckpoint
from llmkit.trainer.callbacks.health import HealthMonitor, NonFiniteGuard
from llmkit.trainer.callbacks.lens import LensMonitor
from llmkit.trainer.callbacks.overfit import OverfitMonitor
from llmkit.trainer.callbacks.progress import TrainLoss
from llmkit.trainer.callbacks.samples import LMSamples, SpanSamples
from llmkit.trainer.callbacks.tensorboard import TensorBoardLayout
from llmkit.trainer.callbacks.throughput import Throughput


@dataclass(frozen=True)
class RunCallbacks:
    """The callback list, and the two the run asks questions of when it ends."""

    all: list[L.Callback]
    last: LastCheckpoint  # what it saved, when interrupted
    overfit: OverfitMonitor  # its summary closes the run


def standard_callbacks(cfg: Config, tok: Tokenizer, gpt: GPTConfig, run_dir: Path,
                       log: Log) -> RunCallbacks:
    """The run's callbacks; the NaN guard first, so a bad step is never applied nor saved."""
    training = cfg.training
    last = LastCheckpoint(run_dir / "checkpoints", training.checkpoint_every_steps)
    overfit = OverfitMonitor(ratio_threshold=training.overfit_ratio,
                             patience=training.overfit_patience,
                             ppl_floor=1.5 if cfg.project.task == "lm" else None,
                             stop_on_overfit=training.stop_on_overfit, log=log)
    callbacks: list[L.Callback] = [
        NonFiniteGuard(last.path),
        last,
        TrainLoss(cfg.logging.log_every_steps),
        Throughput(cfg.logging.log_every_steps, flops_per_token(gpt),
                   matmul_dtype(resolve_precision(training.precision))),
        _samples(cfg, tok),
        HealthMonitor(cfg.logging.health_every_steps, log=log),
        overfit,
        TensorBoardLayout(cfg, model_params(gpt, cfg.project.task)[0]),
        *_lens(cfg),
    ]
    return RunCallbacks(all=callbacks, last=last, overfit=overfit)


def _samples(cfg: Config, tok: Tokenizer) -> L.Callback:
    n = cfg.logging.num_samples
    if cfg.project.task == "span":
        return SpanSamples(n, cfg.logging.sample_every_steps)
    return LMSamples(n, tok.decode, cfg.logging.sample_every_steps, max_new_tokens=48,
                     seed=cfg.project.seed)


def _lens(cfg: Config) -> list[L.Callback]:
    """The per-layer lens of LM runs (off with logging.lens_windows: 0; not under FSDP,
    whose sharded weights cannot run one layer outside the wrapped forward)."""
    logging = cfg.logging
    if (cfg.project.task != "lm" or logging.lens_windows == 0
            or cfg.training.strategy == "fsdp"):
        return []
    return [LensMonitor(logging.lens_windows, logging.lens_every_steps)]
