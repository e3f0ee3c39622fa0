"""The run folder: which run `--resume` continues, from which checkpoint, and the config copy."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from llmkit.checkpoint import (
    LAST,
    check_compatible,
    latest_run,
    load_checkpoint,
    run_version,
    runs_root,
)
from llmkit.config import Config
from llmkit.errors import CheckpointError
from llmkit.fsutil import atomic_path, atomic_write_text
from llmkit.tokenizer import Tokenizer
from llmkit.trainer.task import TaskModule


def run_to_resume(cfg: Config) -> Path:
    """The newest run, which must have a `last.ckpt`."""
    run = latest_run(cfg)
    if run is None or not (run / "checkpoints" / LAST).is_file():
        raise CheckpointError(f"nothing to resume: no {LAST} under {runs_root(cfg)}; start "
                              f"with `llmkit train`")
    return run


def resume_point(run: Path, cfg: Config, module: TaskModule, tok: Tokenizer
                 ) -> tuple[Path, int]:
    """The run's last checkpoint and version, checked against the current model and tokenizer."""
    ckpt = run / "checkpoints" / LAST
    meta = load_checkpoint(ckpt).get("llmkit", {})
    check_compatible(meta, cfg, module.model.config, tok, ckpt)
    return ckpt, run_version(run)


def save_run_config(cfg: Config, run_dir: Path) -> None:
    """A copy of the user's file and of the resolved config go into every run folder."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(run_dir / "llmkit.yaml") as tmp:
        shutil.copyfile(cfg.file, tmp)
    atomic_write_text(run_dir / "config.resolved.yaml",
                      yaml.safe_dump(cfg.to_dict(), sort_keys=False))
