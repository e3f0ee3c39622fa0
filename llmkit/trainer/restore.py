"""A trained checkpoint back in its LightningModule, for code that wants the module.

The checkpoint is read, checked and loaded once, by `llmkit.inference.load_model` (the
Lightning-free loader that generate, predict, eval and export use); this only puts the
loaded model into the task's LightningModule.
"""

from __future__ import annotations

from pathlib import Path

import torch

from llmkit.config import Config
from llmkit.console import Log
from llmkit.inference import load_model
from llmkit.tokenizer import Tokenizer
from llmkit.trainer.build import build_module
from llmkit.trainer.task import TaskModule


def load_trained(cfg: Config, checkpoint: Path | None = None,
                 log: Log = print) -> tuple[Config, Tokenizer, TaskModule, Path]:
    """The project's tokenizer and a module with the checkpoint's weights, in eval mode.

    The checkpoint must have been trained with this tokenizer and model shape (checked
    before any weight is loaded); it is read with `weights_only=True`.
    """
    trained = load_model(cfg, checkpoint, log=log)
    with torch.device("meta"):  # no memory, no random init: the loaded model takes its place
        module = build_module(trained.cfg, trained.tok)
    module.model = trained.model
    module.eval()
    return trained.cfg, trained.tok, module, trained.path
