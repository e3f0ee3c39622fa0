"""What a `training.precision` setting means, without Lightning (inference reads it too)."""

from __future__ import annotations

import torch


def resolve_precision(precision: str) -> str:
    """`auto`: bf16-mixed on a GPU that supports it, else 32-bit."""
    if precision == "auto":
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return "bf16-mixed"
        return "32-true"
    return "32-true" if precision == "32" else precision
