"""AdamW with decay on matrices only, and a warmup + cosine schedule to a floor."""

from __future__ import annotations

import math

import torch

from llmkit.config import TrainingConfig
from llmkit.models import configure_optimizer_groups


def lr_factor(step: int, cfg: TrainingConfig) -> float:
    """Multiplier of the peak lr at optimizer step `step` (0-based).

    Linear warmup from 0 over `warmup_steps`, then cosine decay to `min_lr_ratio` at
    `max_steps` (constant schedule: flat after warmup).
    """
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.lr_schedule == "constant":
        return 1.0
    span = max(1, cfg.max_steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    floor = cfg.min_lr_ratio
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_optimizer(model: torch.nn.Module, cfg: TrainingConfig,
                    fused: bool = False) -> tuple[torch.optim.Optimizer, object]:
    """AdamW over `model` and a per-step LambdaLR schedule."""
    groups = configure_optimizer_groups(model, cfg.weight_decay)
    kwargs = {"fused": True} if fused else {}
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.95), eps=1e-8, **kwargs)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg))
    return optimizer, scheduler
