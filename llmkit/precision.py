"""What a `training.precision` setting means, without Lightning: the setting the Trainer
gets, and the dtype the matmuls run in. Training, `llmkit smoke` and inference all read
the setting through these two functions."""

from __future__ import annotations

import torch


def resolve_precision(precision: str) -> str:
    """`auto`: bf16-mixed on a GPU that supports it, else 32-bit."""
    if precision == "auto":
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return "bf16-mixed"
        return "32-true"
    return "32-true" if precision == "32" else precision


def matmul_dtype(precision: str) -> torch.dtype:
    """The dtype the matmuls of a Lightning precision setting run in."""
    if precision.startswith("bf16"):
        return torch.bfloat16
    if precision.startswith("16"):
        return torch.float16
    return torch.float32
