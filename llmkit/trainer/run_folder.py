"""The run folder: which run `--resume` continues, from which checkpoint, and the config copy."""

from __future__ import annotations

from pathlib import Path

import yaml

from llmkit.checkpoint import (
    LAST,
    check_compatible,
    check_resumable,
    latest_run,
    load_checkpoint,
    run_version,
    runs_root,
)
from llmkit.config import Config
from llmkit.errors import CheckpointError
from llmkit.fsutil import atomic_write_bytes, atomic_write_text
from llmkit.models import GPTConfig
from llmkit.tokenizer import Tokenizer


def run_to_resume(cfg: Config) -> Path:
    """The newest run, which must have a `last.ckpt`."""
    run = latest_run(cfg)
    if run is None or not (run / "checkpoints" / LAST).is_file():
        raise CheckpointError(f"nothing to resume: no {LAST} under {runs_root(cfg)}; start "
                              f"with `llmkit train`")
    return run


def resume_point(run: Path, cfg: Config, gpt: GPTConfig, tok: Tokenizer) -> tuple[Path, int]:
    """The run's last checkpoint and version, checked against the current model and tokenizer.

    Called before the data is prepared: a checkpoint of another tokenizer is refused
    before the corpus is encoded again with the new one.
    """
    ckpt = run / "checkpoints" / LAST
    meta = load_checkpoint(ckpt).get("llmkit", {})
    check_compatible(meta, cfg, gpt, tok, ckpt)
    check_resumable(meta, cfg, ckpt)
    return ckpt, run_version(run)


def save_run_config(cfg: Config, run_dir: Path) -> None:
    """A copy of the user's file and of the resolved config go into every run folder."""
    run_dir.mkdir(parents=True, exist_ok=True)
    # Atomic: a full disk leaves no empty copy behind (fsutil says which file failed).
    atomic_write_bytes(run_dir / "llmkit.yaml", cfg.file.read_bytes())
    resolved = yaml.safe_dump(cfg.to_dict(), sort_keys=False)
    atomic_write_text(run_dir / "config.resolved.yaml", resolved)
