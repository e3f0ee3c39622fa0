"""`llmkit train`: the whole training story, from `load_config` to `trainer.fit`."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import yaml
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only

from llmkit.config import Config, load_config
from llmkit.data.module import LlmkitDataModule
from llmkit.data.prepare import prepare_data
from llmkit.errors import CheckpointError, LlmkitError
from llmkit.trainer.build import build_module, build_trainer, flops_per_token
from llmkit.trainer.callbacks.checkpointing import LastCheckpoint
from llmkit.trainer.callbacks.health import HealthMonitor, NonFiniteGuard
from llmkit.trainer.callbacks.overfit import OverfitMonitor
from llmkit.trainer.callbacks.samples import LMSamples, SpanSamples
from llmkit.trainer.callbacks.throughput import Throughput
from llmkit.trainer.checkpoint import (
    LAST,
    check_compatible,
    latest_run,
    load_checkpoint,
    runs_root,
)
from llmkit.trainer.init_from import init_trunk
from llmkit.trainer.preflight import preflight_warnings
from llmkit.trainer.sync import ensure_tokenizer

Log = Callable[[str], None]


class TrainingInterrupted(LlmkitError):
    """Ctrl-C or SIGTERM stopped training; the message says what `last.ckpt` holds."""


@dataclass
class RunResult:
    """What a training run produced, for the CLI's closing lines and for tests."""

    run_dir: Path
    last_checkpoint: Path
    best_checkpoint: Path | None
    best_val_loss: float | None
    global_step: int
    notes: list[str] = field(default_factory=list)
    global_rank: int = 0

    def summary(self) -> str:
        """The closing lines of `llmkit train` (empty on ranks other than 0)."""
        if self.global_rank != 0:
            return ""
        lines = [*self.notes]
        lines.append(f"training finished at step {self.global_step}")
        if self.best_val_loss is not None:
            lines.append(f"best val/loss {self.best_val_loss:.4f}: {self.best_checkpoint}")
        lines.append(f"last checkpoint: {self.last_checkpoint}")
        lines.append(f"TensorBoard logs: {self.run_dir}")
        lines.append(f"open them with: tensorboard --logdir {self.run_dir.parent}")
        return "\n".join(lines)


def train(root: Path, overrides: list[str] | None = None, *, resume: bool = False,
          stop_at: int | None = None, log: Log = print, progress: bool = True,
          extra_callbacks: list[L.Callback] | None = None) -> RunResult:
    """Train the project at `root`; see the module docstring for the steps.

    Args:
        overrides: `section.key=value` config overrides, as `-o` on the command line.
        resume: continue the newest run from its last checkpoint, in the same run folder.
        stop_at: stop after this many steps; `training.max_steps` still sets the schedule.
        log: where progress lines and warnings go.
        progress: show the progress bar (and tokenizer training progress).
        extra_callbacks: more Lightning callbacks (benchmarks, experiments).
    """
    if rank_zero_only.rank != 0:
        # Under DDP the launcher starts this command again for each other rank (its rank
        # is in the environment): rank 0 alone reports.
        log = _quiet
    cfg = load_config(root, overrides or [])
    resume_run = _run_to_resume(cfg) if resume else None  # fail before the slow steps
    L.seed_everything(cfg.project.seed, workers=True, verbose=False)

    # The tokenizer is the single source of truth for the vocabulary; the data cache is
    # rebuilt only when the tokenizer, the data or the keys that shape it changed.
    cfg, tok = ensure_tokenizer(cfg, log=log, show_progress=progress)
    prepared = prepare_data(cfg, tok, log=log, progress=progress)

    module = build_module(cfg, tok)
    if cfg.model.init_from is not None and resume_run is None:
        log(init_trunk(module.model.transformer, cfg, tok))  # a resume loads its own weights
    if cfg.training.compile:
        # In place: parameter names (and so checkpoints) stay those of the plain model.
        module.model.compile()
    datamodule = LlmkitDataModule(cfg, tok)
    if cfg.project.task == "span":
        log(datamodule.validation_summary())
    for warning in preflight_warnings(cfg, module.model.config, prepared.meta["report"]):
        log(warning)  # too little data for the model, unused vocabulary, val text in train

    ckpt_path, version = (_resume_point(resume_run, cfg, module, tok) if resume_run
                          else (None, None))
    logger = TensorBoardLogger(save_dir=str(cfg.path(cfg.logging.dir)), name=cfg.project.name,
                               version=version, default_hp_metric=False)
    run_dir = Path(logger.log_dir)
    t = cfg.training
    last = LastCheckpoint(run_dir / "checkpoints", t.checkpoint_every_steps)
    overfit = OverfitMonitor(ratio_threshold=t.overfit_ratio, patience=t.overfit_patience,
                             ppl_floor=1.5 if cfg.project.task == "lm" else None,
                             stop_on_overfit=t.stop_on_overfit, log=log)
    callbacks: list[L.Callback] = [
        NonFiniteGuard(last.path),  # first: a NaN step is never applied nor saved
        last,
        Throughput(cfg.logging.log_every_steps, flops_per_token(module.model.config)),
        _samples_callback(cfg, tok),
        HealthMonitor(cfg.logging.health_every_steps, log=log),
        overfit,
        *(extra_callbacks or []),
    ]
    trainer = build_trainer(cfg, logger, callbacks, stop_at=stop_at, progress=progress)
    if trainer.global_rank == 0:
        _save_run_config(cfg, run_dir)
    log(f"run: {run_dir}{' (resumed from ' + str(ckpt_path) + ')' if ckpt_path else ''}")

    try:
        # weights_only: a checkpoint may hold tensors and plain data, never code to run.
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    except (KeyboardInterrupt, SystemExit):
        # Lightning ends Ctrl-C with exit status 1 and SIGTERM with status 0 (a killed job
        # would look finished), after LastCheckpoint has saved: say so, and how to go on.
        if not last.interrupted:
            raise
        raise TrainingInterrupted(_interrupted(trainer.global_step, last)) from None

    best = trainer.checkpoint_callback
    best_path = Path(best.best_model_path) if best and best.best_model_path else None
    score = best.best_model_score if best else None
    best_score = float(score) if score is not None else None
    return RunResult(run_dir=run_dir, last_checkpoint=last.path, best_checkpoint=best_path,
                     best_val_loss=best_score, global_step=trainer.global_step,
                     notes=[overfit.summary()], global_rank=trainer.global_rank)


def _quiet(_: str) -> None:
    pass


def _interrupted(step: int, last: LastCheckpoint) -> str:
    if last.saved_step == step:
        saved = f"saved step {step} to {last.path}"
    elif last.path.is_file():
        saved = f"stopped inside an optimizer update, so {last.path} keeps an earlier step"
    else:
        saved = "no checkpoint was saved yet"
    resume = "; continue with `llmkit train --resume`" if last.path.is_file() else ""
    return f"training interrupted at step {step}: {saved}{resume}"


def _run_to_resume(cfg: Config) -> Path:
    """The newest run, which must have a `last.ckpt`."""
    run = latest_run(cfg)
    if run is None or not (run / "checkpoints" / LAST).is_file():
        raise CheckpointError(f"nothing to resume: no {LAST} under {runs_root(cfg)}; start "
                              f"with `llmkit train`")
    return run


def _resume_point(run: Path, cfg: Config, module, tok) -> tuple[Path, int]:
    """The run's last checkpoint, checked against the current model and tokenizer."""
    ckpt = run / "checkpoints" / LAST
    meta = load_checkpoint(ckpt).get("llmkit", {})
    check_compatible(meta, cfg, module.model.config, tok, ckpt)
    return ckpt, int(run.name.split("_")[1])


def _samples_callback(cfg: Config, tok) -> L.Callback:
    n = cfg.logging.num_samples
    if cfg.project.task == "span":
        return SpanSamples(n, cfg.logging.sample_every_steps)
    return LMSamples(n, tok.decode, cfg.logging.sample_every_steps, max_new_tokens=48,
                     seed=cfg.project.seed)


def _save_run_config(cfg: Config, run_dir: Path) -> None:
    """A copy of the user's file and of the resolved config go into every run folder."""
    run_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(cfg.file, run_dir / "llmkit.yaml")
    resolved = yaml.safe_dump(cfg.to_dict(), sort_keys=False)
    (run_dir / "config.resolved.yaml").write_text(resolved, encoding="utf-8")
