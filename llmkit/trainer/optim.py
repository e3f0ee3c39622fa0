"""The optimizer named by `training.optimizer`, and a warmup + cosine schedule to a floor.

`adamw`: AdamW on every parameter, decay on matrices only. `muon`: Muon (Nesterov
momentum, then Newton-Schulz orthogonalisation of the update) on the hidden 2-D weight
matrices of the transformer blocks, AdamW on embeddings, norms, biases and heads, as the
speed-run recipes do.

Muon is written here rather than taken from `torch.optim.Muon` (PyTorch 2.9+): torch's
always runs the Newton-Schulz iteration in bfloat16, which a CPU without native bf16
matmuls (AVX2 only) emulates about 14x slower than float32: 10 s per step for the `tiny`
model on the 2-core machine this was measured on, against 1.2 s for forward and backward.
Here the iteration runs in bfloat16 where matmuls have it natively (a GPU, a CPU with
AMX) and in float32 elsewhere, and all matrices of one shape are orthogonalised in one
batched pass; the algorithm and its constants are torch's (and Keller Jordan's), so the
same Muon runs on any torch.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import torch

from llmkit.config import TrainingConfig
from llmkit.models import configure_optimizer_groups

MUON_MOMENTUM = 0.95
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)  # quintic Newton-Schulz, steepest at zero
NS_STEPS = 5


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


def newton_schulz_dtype(device: torch.device) -> torch.dtype:
    """bfloat16 where matmuls have it natively (a GPU; a CPU with AMX tiles), else float32.

    On a CPU without native bf16 (AVX2 only) bfloat16 matmuls are emulated and about 14x
    slower than float32; with AMX they are about 3.5x faster at the sizes Muon sees.
    """
    if device.type == "cuda" or (device.type == "cpu" and _cpu_has_amx()):
        return torch.bfloat16
    return torch.float32


@functools.cache
def _cpu_has_amx() -> bool:
    """Asked once per process: the optimizer step asks for every matrix shape."""
    amx = getattr(torch.cpu, "_is_amx_tile_supported", None)  # torch 2.3+; absent: no AMX
    return amx is not None and amx()


def orthogonalize(g: torch.Tensor, steps: int = NS_STEPS,
                  dtype: torch.dtype | None = None) -> torch.Tensor:
    """Approximately U V^T of each matrix g = U S V^T (singular values pushed to 0.7-1.2).

    `g` is one matrix (m, n) or a stack of same-shaped ones (k, m, n), done in one batched
    pass (far fewer, larger matmuls than one at a time). Quintic Newton-Schulz on the
    smaller Gram matrix, after scaling each matrix so that its spectral norm is at most 1,
    in `dtype` (default: `newton_schulz_dtype` of g's device).
    """
    a, b, c = NS_COEFFICIENTS
    x = g.to(dtype or newton_schulz_dtype(g.device))
    single = x.dim() == 2
    if single:
        x = x.unsqueeze(0)
    tall = x.size(-2) > x.size(-1)
    if tall:
        x = x.mT
    x = x / x.norm(dim=(-2, -1), keepdim=True).clamp_min(1e-7)  # Frobenius >= spectral
    for _ in range(steps):
        gram = x @ x.mT
        poly = torch.baddbmm(gram, gram, gram, beta=b, alpha=c)  # b * gram + c * gram^2
        x = torch.baddbmm(x, poly, x, beta=a)  # a * x + poly @ x
    if tall:
        x = x.mT
    return x[0] if single else x


class MuonAdamW(torch.optim.Optimizer):
    """Muon for the groups marked `hidden`, AdamW for the rest, as one optimizer.

    Lightning's automatic optimisation, gradient clipping and the lr schedule expect a
    single optimizer: this one holds every group, applies Muon to the hidden matrices
    itself and hands the other groups to an inner AdamW that shares its groups and its
    `state`, so `state_dict` is the ordinary one and a resume restores both exactly.

    Muon's update of an (A, B) matrix is scaled by 0.2 * sqrt(max(A, B)), which gives it
    the RMS of a typical AdamW update (Moonshot's "match_rms_adamw"): one learning rate
    and one weight decay (decoupled, as AdamW's) serve both.

    Args:
        groups: parameter groups from `configure_optimizer_groups`.
        lr: peak learning rate of both.
        betas: AdamW's betas.
        fused: use AdamW's fused kernel.
    """

    def __init__(self, groups: list[dict[str, Any]], lr: float, betas: tuple[float, float],
                 fused: bool = False) -> None:
        super().__init__(groups, {"lr": lr})
        rest = [g for g in self.param_groups if not g["hidden"]]
        self.adamw = torch.optim.AdamW(rest, lr=lr, betas=betas, eps=1e-8, fused=fused)
        self._share()

    def _share(self) -> None:
        """Point the inner AdamW at this optimizer's non-hidden groups and its state."""
        self.adamw.param_groups = [g for g in self.param_groups if not g["hidden"]]
        self.adamw.state = self.state  # disjoint parameters: one dict serves both

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)  # builds new group dicts and a new state
        self._share()

    @torch.no_grad()
    def step(self, closure=None):  # noqa: ANN001 - torch's signature
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()  # forward and backward, once (Lightning's closure)
        for group in self.param_groups:
            if group["hidden"]:
                self._muon(group)
        self.adamw.step()
        return loss

    def _muon(self, group: dict[str, Any]) -> None:
        """Nesterov momentum, then one batched orthogonalisation per matrix shape."""
        lr, decay = group["lr"], group["weight_decay"]
        by_shape: dict[tuple[int, ...], list[torch.Tensor]] = {}
        for p in group["params"]:
            if p.grad is not None:
                by_shape.setdefault(tuple(p.shape), []).append(p)
        for shape, params in by_shape.items():
            grads = [p.grad for p in params]
            bufs = [self._momentum_buffer(p) for p in params]
            torch._foreach_lerp_(bufs, grads, 1 - MUON_MOMENTUM)
            updates = torch._foreach_lerp(grads, bufs, MUON_MOMENTUM)  # Nesterov: one ahead
            updates = orthogonalize(torch.stack(updates)).to(params[0].dtype)
            torch._foreach_mul_(params, 1 - lr * decay)
            torch._foreach_add_(params, updates.unbind(0), alpha=-lr * 0.2 * math.sqrt(max(shape)))

    def _momentum_buffer(self, p: torch.Tensor) -> torch.Tensor:
        state = self.state[p]
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = torch.zeros_like(p)
        return state["momentum_buffer"]


def build_optimizer(model: torch.nn.Module, cfg: TrainingConfig,
                    fused: bool = False) -> tuple[torch.optim.Optimizer, object]:
    """The configured optimizer over `model` and a per-step LambdaLR schedule."""
    groups = configure_optimizer_groups(model, cfg.weight_decay)
    betas = (cfg.betas[0], cfg.betas[1])
    optimizer: torch.optim.Optimizer
    if cfg.optimizer == "muon":
        optimizer = MuonAdamW(groups, lr=cfg.lr, betas=betas, fused=fused)
    else:
        for g in groups:
            g.pop("hidden")  # AdamW treats every group alike
        optimizer = torch.optim.AdamW(groups, lr=cfg.lr, betas=betas, eps=1e-8, fused=fused)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg))
    return optimizer, scheduler
