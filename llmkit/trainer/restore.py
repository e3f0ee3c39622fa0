"""A trained checkpoint back in its LightningModule, checked against tokenizer and shape."""

from __future__ import annotations

from pathlib import Path

from llmkit.checkpoint import check_compatible, find_checkpoint, load_checkpoint
from llmkit.config import Config
from llmkit.console import Log
from llmkit.errors import CheckpointError, LlmkitError
from llmkit.models.from_config import gpt_config
from llmkit.tokenizer import Tokenizer
from llmkit.trainer.build import build_module
from llmkit.trainer.task import TaskModule
from llmkit.vocab_sync import sync_vocab


def load_trained(cfg: Config, checkpoint: Path | None = None,
                 log: Log = print) -> tuple[Config, Tokenizer, TaskModule, Path]:
    """The project's tokenizer and a module with the checkpoint's weights, in eval mode.

    The checkpoint must have been trained with this tokenizer and model shape (checked
    before any weight is loaded); it is read with `weights_only=True`.
    """
    path = cfg.path(cfg.tokenizer.path)
    if not path.exists():
        raise LlmkitError(f"no tokenizer at {cfg.tokenizer.path}; train first with "
                          f"`llmkit train`")
    tok = Tokenizer.load(path)
    cfg = sync_vocab(cfg, tok, log)
    ckpt_path = find_checkpoint(cfg, checkpoint)
    ckpt = load_checkpoint(ckpt_path)
    if "llmkit" not in ckpt or "state_dict" not in ckpt:
        raise CheckpointError(f"{ckpt_path} is not an llmkit checkpoint (no 'llmkit' entry)")
    check_compatible(ckpt["llmkit"], cfg, gpt_config(cfg, tok), tok, ckpt_path)
    module = build_module(cfg, tok)
    module.load_state_dict(ckpt["state_dict"])
    module.eval()
    return cfg, tok, module, ckpt_path
