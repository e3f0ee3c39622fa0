"""Building the model, the LightningModule and the `lightning.Trainer` from the config."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from llmkit.checkpoint import checkpoint_meta
from llmkit.config import Config
from llmkit.errors import ConfigError
from llmkit.models import CausalLM, GPTConfig, SpanModel
from llmkit.models.from_config import gpt_config
from llmkit.precision import resolve_precision
from llmkit.tokenizer import Tokenizer
from llmkit.trainer.callbacks.progress import LossBar
from llmkit.trainer.checkpoint_io import AtomicCheckpointIO
from llmkit.trainer.task import TaskModule


def build_module(cfg: Config, tok: Tokenizer) -> TaskModule:
    """The LightningModule for the project's task, on a freshly initialised model."""
    gpt = gpt_config(cfg, tok)
    meta = checkpoint_meta(cfg, gpt, tok)
    if cfg.project.task == "span":
        from llmkit.trainer.span_module import SpanModule

        return SpanModule(cfg, gpt, meta)
    from llmkit.trainer.lm_module import LMModule

    return LMModule(cfg, gpt, meta)


def flops_per_token(gpt: GPTConfig) -> float:
    """Training FLOPs per token (forward + backward), counted from the model code.

    6 per weight that takes part in a matrix multiply: every Linear in the blocks and the
    head; the LM head is a (n_embd x vocab) matmul whether or not it shares its matrix
    with the token embedding (nanoGPT's get_num_params warns that leaving it out
    undercounts). Embedding look-ups and norms are not matmuls. Plus attention's two
    (T x T) matmuls, 12 * n_layer * n_embd * T per token at the full context
    T = block_size (PaLM, appendix B, counting the causal half that is masked off, as
    everyone does).
    """
    with torch.device("meta"):  # no memory: only the shapes are read
        model = CausalLM(gpt) if gpt.causal else SpanModel(gpt)
    matmul = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    return 6 * matmul + 12 * gpt.n_layer * gpt.n_embd * gpt.block_size


def val_batch_limit(cfg: Config) -> int | float:
    """Batches per validation: LM validation is `training.val_batches` fixed windows; span
    validation scores every window of every validation example (1.0 = all batches), so
    that no example is left out (`span.val_examples` caps the examples instead)."""
    return 1.0 if cfg.project.task == "span" else cfg.training.val_batches


def _strategy(cfg: Config) -> Any:
    name = cfg.training.strategy
    if name == "fsdp":
        from lightning.pytorch.strategies import FSDPStrategy

        from llmkit.models.gpt import Block

        return FSDPStrategy(auto_wrap_policy={Block})
    return name


class _NoAdverts(logging.Filter):
    """Drop Lightning's product tips from the console; keep everything else it says."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "💡 Tip:" not in record.getMessage()


_RANK_ZERO_LOG = logging.getLogger("lightning.pytorch.utilities.rank_zero")
if not any(isinstance(f, _NoAdverts) for f in _RANK_ZERO_LOG.filters):
    _RANK_ZERO_LOG.addFilter(_NoAdverts())


def build_trainer(cfg: Config, logger: TensorBoardLogger, callbacks: list[L.Callback],
                  *, stop_at: int | None = None, progress: bool = True) -> L.Trainer:
    """A `lightning.Trainer` configured from `cfg.training` and `cfg.logging`.

    Args:
        stop_at: stop after this many optimizer steps, keeping `training.max_steps` as the
            length of the learning-rate schedule (a 2N-step run stopped at N).
    """
    ckpt_dir = Path(logger.log_dir) / "checkpoints"
    best = ModelCheckpoint(dirpath=ckpt_dir, filename="best-step{step:06d}", monitor="val/loss",
                           mode="min", save_top_k=1, auto_insert_metric_name=False)
    extra: list[L.Callback] = [best, LearningRateMonitor(logging_interval="step")]
    if progress:
        extra.append(LossBar(refresh_rate=cfg.logging.log_every_steps * cfg.training.grad_accum))
    if cfg.training.strategy == "fsdp" and not torch.cuda.is_available():
        raise ConfigError(["training.strategy: found 'fsdp', which shards the model across "
                           "GPUs and there is no GPU here; use 'ddp' (it also runs on CPU: "
                           "-o training.strategy=ddp -o training.devices=2) or 'auto'"],
                          str(cfg.file))
    try:
        return _trainer(cfg, logger, [*callbacks, *extra], stop_at, progress)
    except (MisconfigurationException, ValueError, TypeError) as e:
        # Lightning's own checks of these settings: name the llmkit key, not its argument.
        raise ConfigError([lightning_problem(e)], str(cfg.file)) from None


# Lightning's argument names, as they appear in its messages -> the llmkit key that sets them
_LIGHTNING_KEYS = (
    ("precision", "training.precision"),
    ("strategy", "training.strategy"),
    ("num_nodes", "training.num_nodes"),
    ("accumulate_grad_batches", "training.grad_accum"),
    ("gradient_clip", "training.grad_clip"),
    ("val_check_interval", "training.val_every_steps"),
    ("limit_val_batches", "training.val_batches"),
    ("max_steps", "training.max_steps"),
    ("devices", "training.devices"),
    ("device", "training.devices"),
    ("accelerator", "training.devices"),
    ("gpu", "training.devices"),
)


def lightning_problem(e: BaseException) -> str:
    """One line for a configuration error Lightning raised: its reason and our key."""
    reason = " ".join(str(e).split())[:300] or type(e).__name__
    text = reason.lower()
    keys = list(dict.fromkeys(key for word, key in _LIGHTNING_KEYS if word in text))
    if not keys:
        keys = ["training.devices", "training.strategy", "training.precision"]
    return (f"Lightning refused the training settings ({reason}); change "
            f"{' or '.join(keys)} in llmkit.yaml (or for one run with -o {keys[0]}=...)")


def _trainer(cfg: Config, logger: TensorBoardLogger, callbacks: list[L.Callback],
             stop_at: int | None, progress: bool) -> L.Trainer:
    training = cfg.training
    return L.Trainer(
        accelerator="auto",
        devices=training.devices,
        num_nodes=training.num_nodes,
        strategy=_strategy(cfg),
        precision=resolve_precision(training.precision),
        max_steps=stop_at if stop_at is not None else training.max_steps,
        max_epochs=-1,
        accumulate_grad_batches=training.grad_accum,
        gradient_clip_val=training.grad_clip or None,
        val_check_interval=training.val_every_steps * training.grad_accum,  # counted in batches
        check_val_every_n_epoch=None,
        limit_val_batches=val_batch_limit(cfg),
        num_sanity_val_steps=1,
        logger=logger,
        callbacks=callbacks,
        log_every_n_steps=cfg.logging.log_every_steps,
        enable_progress_bar=progress,
        enable_model_summary=False,
        plugins=[AtomicCheckpointIO()],
        use_distributed_sampler=False,  # the datasets shard by rank themselves
    )
