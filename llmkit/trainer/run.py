"""`llmkit train`: the whole training story, from `load_config` to `trainer.fit`."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import lightning as L
from lightning.pytorch.utilities import rank_zero_only

from llmkit.config import load_config
from llmkit.console import Log, quiet
from llmkit.data.module import LlmkitDataModule
from llmkit.data.prepare import prepare_data
from llmkit.init_from import init_trunk
from llmkit.lock import run_lock
from llmkit.models.from_config import gpt_config
from llmkit.preflight import preflight_warnings
from llmkit.trainer.build import build_module, build_trainer
from llmkit.trainer.callbacks.standard import standard_callbacks
from llmkit.trainer.callbacks.tensorboard import RunLogger
from llmkit.trainer.result import RunResult, TrainingInterrupted
from llmkit.trainer.run_folder import resume_point, run_to_resume, save_run_config
from llmkit.vocab_sync import ensure_tokenizer

__all__ = ["RunResult", "TrainingInterrupted", "train"]


def train(root: Path, overrides: list[str] | None = None, *, resume: bool = False,
          stop_at: int | None = None, log: Log = print,
          progress: bool = True, extra_callbacks: list[L.Callback] | None = None) -> RunResult:
    """Train the project at `root`.

    Args:
        overrides: `section.key=value` config overrides, as `-o` on the command line.
        resume: continue the newest run from its last checkpoint, in the same run folder.
        stop_at: stop after this many steps; `training.max_steps` still sets the schedule.
        log: where progress lines and warnings go.
        progress: show the progress bar (and tokenizer training progress).
        extra_callbacks: more Lightning callbacks (benchmarks, experiments).
    """
    if rank_zero_only.rank != 0:
        log = quiet  # DDP starts this command again for each other rank: rank 0 reports
    cfg = load_config(root, overrides or [])
    resume_run = run_to_resume(cfg) if resume else None  # fail before the slow steps
    # One training per project at a time; other DDP ranks are rank 0's own processes.
    with run_lock(cfg) if rank_zero_only.rank == 0 else nullcontext():
        L.seed_everything(cfg.project.seed, workers=True, verbose=False)

        # The tokenizer is the single source of truth for the vocabulary; the data cache is
        # rebuilt only when the tokenizer, the data or the keys that shape it changed.
        cfg, tok = ensure_tokenizer(cfg, log=log, show_progress=progress)
        ckpt_path, version = (resume_point(resume_run, cfg, gpt_config(cfg, tok), tok)
                              if resume_run else (None, None))  # before re-encoding the data
        prepared = prepare_data(cfg, tok, log=log, progress=progress)
        module = build_module(cfg, tok)
        if cfg.model.init_from is not None and resume_run is None:
            log(init_trunk(module.model.transformer, cfg, tok))  # a resume loads its weights
        if cfg.training.compile:
            module.model.compile()  # in place: checkpoint keys stay those of the plain model
        for warning in preflight_warnings(cfg, module.model.config, prepared.meta["report"]):
            log(warning)  # too little data for the model, unused vocabulary, val text in train

        logger = RunLogger(save_dir=str(cfg.path(cfg.logging.dir)), name=cfg.project.name,
                           version=version, default_hp_metric=False)
        run_dir = Path(logger.log_dir)
        callbacks = standard_callbacks(cfg, tok, module.model.config, run_dir, log)
        trainer = build_trainer(cfg, logger, [*callbacks.all, *(extra_callbacks or [])],
                                stop_at=stop_at, progress=progress)
        if trainer.global_rank == 0:
            save_run_config(cfg, run_dir)
        log(f"run: {run_dir}{' (resumed from ' + str(ckpt_path) + ')' if ckpt_path else ''}")
        datamodule = LlmkitDataModule(cfg, tok)
        if cfg.project.task == "span":
            log(datamodule.validation_summary())  # how many examples each validation scores
        try:
            # weights_only: a checkpoint may hold tensors and plain data, never code to run.
            trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
        except (KeyboardInterrupt, SystemExit):
            # Lightning ends Ctrl-C with exit status 1 and SIGTERM with status 0 (a killed
            # job would look finished), after LastCheckpoint has saved: say so, and how to
            # go on.
            if not callbacks.last.interrupted:
                raise
            raise TrainingInterrupted.at(trainer.global_step, callbacks.last) from None
        return RunResult.from_trainer(trainer, run_dir, callbacks.last,
                                      [callbacks.overfit.summary()])

