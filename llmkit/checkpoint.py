"""Checkpoints: what they record, finding them, and loading them safely (no Lightning here).

Every checkpoint carries an `llmkit` entry with the model shape, the task and the
tokenizer's hash and vocabulary size. Loading one next to a different tokenizer or model
shape is an error that names both sides and the fix (DESIGN.md, problem 1).

Every load goes through `load_checkpoint`, which also verifies the file: a checkpoint is a
zip archive whose members each carry a CRC-32 of their bytes, and every member is checked
against it (torch itself does not); every floating-point tensor in it must be finite. A
damaged file is an error naming the file and the damaged part, never weights that load
silently and give other numbers. Lightning's own loads on `--resume` go through it too
(`trainer.checkpoint_io.AtomicCheckpointIO.load_checkpoint`).
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from llmkit.config import Config
from llmkit.errors import CheckpointError, VocabMismatchError
from llmkit.models import GPTConfig
from llmkit.tokenizer import Tokenizer

LAST = "last.ckpt"


def checkpoint_meta(cfg: Config, gpt: GPTConfig, tok: Tokenizer) -> dict[str, Any]:
    """The `llmkit` entry stored in every checkpoint (plain types: loads with weights_only).

    `gpt` holds the model shape and architecture options; `optimizer` the optimizer's
    name and betas, whose state a resume continues.
    """
    return {
        "task": cfg.project.task,
        "gpt": asdict(gpt),
        "tokenizer_hash": tok.hash,
        "vocab_size": tok.vocab_size,
        "tokenizer_path": str(cfg.tokenizer.path),
        "optimizer": optimizer_meta(cfg),
    }


def optimizer_meta(cfg: Config) -> dict[str, Any]:
    """What a resume must keep: the optimizer (its state has that layout) and its betas."""
    return {"name": cfg.training.optimizer, "betas": list(cfg.training.betas)}


# Options added after the first checkpoints were written, with the value those had.
_OLD_DEFAULTS: dict[str, Any] = {"arch": "gpt2", "tie_embeddings": True}


SHAPE_KEYS = ("n_layer", "n_head", "n_embd", "block_size", "bias", "causal",
              "pad_vocab_multiple", "arch", "tie_embeddings")  # what a checkpoint must match


def shape_diffs(meta: dict[str, Any], gpt: GPTConfig, keys: tuple[str, ...],
                theirs: str = "checkpoint", ours: str = "config") -> list[str]:
    """"model.KEY: checkpoint X, config Y" for each of `keys` where the model recorded in
    a checkpoint's `meta` differs from `gpt` (keys that older checkpoints lack read as
    the values those checkpoints were trained with)."""
    recorded, mine = meta.get("gpt", {}), asdict(gpt)
    return [f"model.{k}: {theirs} {recorded.get(k, _OLD_DEFAULTS.get(k))!r}, {ours} {mine[k]!r}"
            for k in keys if recorded.get(k, _OLD_DEFAULTS.get(k)) != mine[k]]


def check_tokenizer(meta: dict[str, Any], tok: Tokenizer, source: str | Path, *,
                    name: str | Path | None = None,
                    then: str = "use the tokenizer the checkpoint was trained with, or train "
                                "a new model with `llmkit train` (without --resume)") -> None:
    """Raise VocabMismatchError if the checkpoint `source` (its `meta`) was trained with
    another tokenizer than `tok` (by hash and vocabulary size).

    Args:
        name: how the message names `tok`'s file (default: its path).
        then: what the message tells the user to do next.
    """
    if meta.get("vocab_size") != tok.vocab_size or meta.get("tokenizer_hash") != tok.hash:
        raise VocabMismatchError(
            f"{source} was trained with a tokenizer of vocab size {meta.get('vocab_size')} "
            f"(hash {str(meta.get('tokenizer_hash'))[:12]}), but "
            f"{tok.path if name is None else name} has vocab size {tok.vocab_size} "
            f"(hash {tok.hash[:12]}); {then}"
        )


def check_compatible(meta: dict[str, Any], cfg: Config, gpt: GPTConfig, tok: Tokenizer,
                     source: Path) -> None:
    """Raise if a checkpoint's recorded tokenizer, task or model shape differs from ours."""
    check_tokenizer(meta, tok, source, name=cfg.tokenizer.path)
    if meta.get("task") != cfg.project.task:
        raise CheckpointError(f"{source} is a {meta.get('task')} checkpoint but the project "
                              f"task is {cfg.project.task}")
    diffs = shape_diffs(meta, gpt, SHAPE_KEYS)
    if diffs:
        raise CheckpointError(f"{source} does not fit the configured model ("
                              + "; ".join(diffs) + "); set those keys back in llmkit.yaml "
                              "to use it, or train a new model with `llmkit train` (without "
                              "--resume)")


def check_resumable(meta: dict[str, Any], cfg: Config, source: Path) -> None:
    """Raise if a resume would continue a checkpoint's optimizer state with another optimizer.

    Checkpoints written before the optimizer was recorded used AdamW with betas
    (0.9, 0.95).
    """
    theirs = meta.get("optimizer", {"name": "adamw", "betas": [0.9, 0.95]})
    ours = optimizer_meta(cfg)
    diffs = [f"training.{key}: checkpoint {theirs.get(k)!r}, config {ours[k]!r}"
             for k, key in (("name", "optimizer"), ("betas", "betas"))
             if theirs.get(k) != ours[k]]
    if diffs:
        raise CheckpointError(f"{source} cannot be resumed with this optimizer ("
                              + "; ".join(diffs) + "); set those keys back in llmkit.yaml "
                              "to resume, or train a new model with `llmkit train` (without "
                              "--resume)")


def runs_root(cfg: Config) -> Path:
    """The folder holding this project's runs: <logging.dir>/<project.name>."""
    return cfg.path(cfg.logging.dir) / cfg.project.name


def run_versions(cfg: Config) -> list[Path]:
    """The run folders (`version_N`), oldest first."""
    root = runs_root(cfg)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and re.fullmatch(r"version_\d+", p.name)]
    return sorted(found, key=run_version)


def run_version(run: Path) -> int:
    """N of a run folder `version_N` (TensorBoardLogger's naming)."""
    return int(run.name.removeprefix("version_"))


def latest_run(cfg: Config) -> Path | None:
    """The newest run that has a checkpoint, or None."""
    for run in reversed(run_versions(cfg)):
        if any((run / "checkpoints").glob("*.ckpt")):
            return run
    return None


def best_checkpoint(run: Path) -> Path | None:
    """The best-by-validation checkpoint of a run, else its last one."""
    best = sorted((run / "checkpoints").glob("best-*.ckpt"))
    if best:
        return best[-1]
    last = run / "checkpoints" / LAST
    return last if last.is_file() else None


def find_checkpoint(cfg: Config, given: Path | None) -> Path:
    """The checkpoint to use for eval/generate/predict, with a helpful error if none."""
    if given is not None:
        path = given if given.is_absolute() else Path.cwd() / given
        if not path.is_file():
            raise CheckpointError(f"checkpoint {given} not found")
        return path
    run = latest_run(cfg)
    ckpt = best_checkpoint(run) if run else None
    if ckpt is None:
        raise CheckpointError(f"no checkpoint under {runs_root(cfg)}; train one with "
                              f"`llmkit train`, or pass --checkpoint PATH")
    return ckpt


_VERIFIED: set[tuple[str, int, int]] = set()  # (real path, size, mtime_ns) checked whole


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint's contents on CPU, verified, loaded with `weights_only=True`.

    The one way llmkit reads a checkpoint (training resumes, eval, generate, predict).
    First every member of the zip archive is checked against its CRC-32, then the file is
    loaded with no pickled code allowed, tensors memory-mapped, and every floating-point
    tensor (weights, optimizer state) must be finite. A file verified once in this process
    and unchanged since (same size and modification time) is not verified again: a resume
    reads its checkpoint first for the metadata, then through Lightning.

    Raises:
        CheckpointError: missing, not a checkpoint, damaged bytes (names the member), or a
            NaN/Inf (names the tensor); the message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found")
    stat = path.stat()
    seen = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    verify = seen not in _VERIFIED
    if verify:
        _check_archive(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # a foreign file, or a pickle that asks for code to run
        raise CheckpointError(f"cannot read checkpoint {path}: {_first_line(e)}") from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path} is not an llmkit checkpoint (found a "
                              f"{type(ckpt).__name__}, not a dictionary)")
    if verify:
        _check_finite(ckpt, path)
        _VERIFIED.add(seen)
    return ckpt


def _check_finite(ckpt: dict[str, Any], path: Path) -> None:
    """Weights and optimizer state must be finite (callbacks keep legitimate infinities:
    the best score so far starts at inf)."""
    trained = {k: ckpt[k] for k in ("state_dict", "optimizer_states") if k in ckpt}
    for name, tensor in _tensors(trained, ""):
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(
                f"checkpoint {path} is damaged: {name} holds NaN or Inf values (llmkit never "
                f"saves one; the file was changed after it was written); use another "
                f"checkpoint (best-*.ckpt, or an earlier run) or train again")


def _check_archive(path: Path) -> None:
    """Every member of the checkpoint's zip archive must match its recorded CRC-32."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()  # reads every member; the name of the first bad one
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        raise CheckpointError(
            f"checkpoint {path} is damaged or not a checkpoint: it is not a complete zip "
            f"archive ({_first_line(e)}); use another checkpoint or train again") from None
    if bad is not None:
        raise CheckpointError(
            f"checkpoint {path} is damaged: its part {bad!r} fails its CRC check (the bytes "
            f"changed after the file was written); use another checkpoint (best-*.ckpt, or "
            f"an earlier run) or train again")


def _tensors(obj: Any, where: str) -> Iterator[tuple[str, torch.Tensor]]:
    """(path, tensor) for every tensor in nested dicts and lists, e.g.
    `optimizer_states/0/state/3/exp_avg`."""
    if isinstance(obj, torch.Tensor):
        yield where, obj
    elif isinstance(obj, dict):
        for key, value in obj.items():
            yield from _tensors(value, f"{where}/{key}" if where else str(key))
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            yield from _tensors(value, f"{where}/{i}" if where else str(i))


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else type(e).__name__
