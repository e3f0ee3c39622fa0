"""The tuned lens: per-layer affine translators trained so each layer's lens matches the model.

The logit lens assumes every layer speaks the last layer's "language"; early layers often
do not, and their logit-lens distributions look worse than what the layer knows. A tuned
lens learns, for each layer i < n_layer, an affine map `h -> h + A_i h + b_i` applied to
the residual stream before ln_f and the unembedding, trained to minimise KL(model ||
lens_i) on the project's own training text, with the model frozen. `A_i` and `b_i` start
at zero, so an untrained tuned lens *is* the logit lens; the last layer needs none.

Translators belong to one set of weights: the file records the checkpoint's fingerprint
(a hash of its weights) and is refused for any other checkpoint.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from itertools import islice
from pathlib import Path
from typing import Any

import torch
from torch import nn

from llmkit.console import Log
from llmkit.errors import LlmkitError
from llmkit.fsutil import atomic_path
from llmkit.inspect.lens import layer_stats, lens_logits
from llmkit.inspect.numerics import kl_bits, log_probs
from llmkit.models import CausalLM

FORMAT = "llmkit.tuned_lens"
FORMAT_VERSION = 1


class TunedLensError(LlmkitError):
    """A translator file is missing, unreadable, or belongs to another checkpoint."""


class TunedLens(nn.Module):
    """One zero-initialised affine translator per layer 0 .. n_layer - 1.

    Call it as `lens(i, h)`: layer i's residual state (..., C) translated, same shape.
    """

    def __init__(self, n_layer: int, n_embd: int) -> None:
        super().__init__()
        self.translators = nn.ModuleList(nn.Linear(n_embd, n_embd) for _ in range(n_layer))
        for t in self.translators:
            nn.init.zeros_(t.weight)
            nn.init.zeros_(t.bias)

    def forward(self, i: int, h: torch.Tensor) -> torch.Tensor:
        # residual form: with zero weights the translator is exactly the identity
        return h + self.translators[i](h)


def fingerprint(model: nn.Module) -> str:
    """A SHA-256 of a model's weights (names, dtypes, shapes and bytes), in hex.

    Two checkpoints share a fingerprint only when every weight is bit-identical, whatever
    else (optimizer state, step counters) their files hold.
    """
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def tuned_lens_path(checkpoint: Path) -> Path:
    """Where the translators of `checkpoint` live: beside it, `<name>.tuned-lens.pt`."""
    return checkpoint.with_name(checkpoint.stem + ".tuned-lens.pt")


def train_tuned_lens(model: CausalLM, batches: Iterable[torch.Tensor], steps: int, *,
                     lr: float = 1e-3, log: Log | None = None) -> TunedLens:
    """Fit translators to the frozen `model` on `steps` batches of token ids (B, T).

    The loss is the sum over layers of the mean KL(model || lens_i) per token. The model's
    weights are not touched (their gradients are switched off for the duration).
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    cfg = model.config
    device = next(model.parameters()).device
    lens = TunedLens(cfg.n_layer, cfg.n_embd).to(device)
    opt = torch.optim.Adam(lens.parameters(), lr=lr)
    was_training = model.training
    flags = [p.requires_grad for p in model.parameters()]
    model.eval()
    model.requires_grad_(False)
    try:
        it = iter(batches)
        for step in range(1, steps + 1):
            x = next(it).to(device)
            with torch.no_grad():
                out = model.transformer.inspect(x)
                final = log_probs(model.logits(out.x))  # (B, T, V)
            loss = torch.zeros((), device=device)
            # every layer but the last (the model itself, KL 0, no translator); islice
            # stops before the loop computes the last layer's logits
            for logits in islice(lens_logits(model, out.hidden, lens), cfg.n_layer):
                loss = loss + kl_bits(final, log_probs(logits)).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if log is not None and (step == 1 or step % 50 == 0 or step == steps):
                mean = loss.item() / cfg.n_layer  # one sync per logged step
                log(f"tuned lens step {step}/{steps}: mean KL {mean:.3f} bits per layer")
    finally:
        for p, flag in zip(model.parameters(), flags, strict=True):
            p.requires_grad_(flag)
        model.train(was_training)
    lens.eval()
    return lens


@torch.no_grad()
def validation_kl(model: CausalLM, batches: Iterable[torch.Tensor],
                  lens: TunedLens | None = None) -> list[float]:
    """Per-layer mean KL(model || lens) in bits over validation batches of ids (B, T).

    With `lens=None` this is the logit lens. Weighted by tokens, so a short last batch
    counts for what it holds.
    """
    total: torch.Tensor | None = None
    count = 0
    for x in batches:
        x = x.to(next(model.parameters()).device)
        kl = layer_stats(model, x, translate=lens)["kl_bits"] * x.numel()
        total = kl if total is None else total + kl
        count += x.numel()
    if total is None:
        raise ValueError("validation_kl needs at least one batch")
    return (total / count).tolist()  # host sync: once, at the end


def save_tuned_lens(path: Path, lens: TunedLens, checkpoint_fingerprint: str,
                    info: dict[str, Any]) -> None:
    """Write the translators with the fingerprint they belong to (atomically)."""
    payload = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "fingerprint": checkpoint_fingerprint,
        "n_layer": len(lens.translators),
        "n_embd": lens.translators[0].in_features if len(lens.translators) else 0,
        "state_dict": lens.state_dict(),
        "info": info,
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_tuned_lens(path: Path, checkpoint_fingerprint: str, checkpoint: Path
                    ) -> tuple[TunedLens, dict[str, Any]]:
    """The translators at `path`, refused unless they were trained for these weights."""
    if not path.is_file():
        raise TunedLensError(f"no tuned lens at {path}; train one with `llmkit lens "
                             f"--train-tuned` (a few hundred steps, minutes on CPU)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or foreign file
        raise TunedLensError(f"cannot read tuned lens {path}: {e}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise TunedLensError(f"{path} is not an llmkit tuned-lens file")
    if payload.get("version") != FORMAT_VERSION:
        raise TunedLensError(f"{path} has tuned-lens format version {payload.get('version')}, "
                             f"this llmkit reads version {FORMAT_VERSION}; retrain it with "
                             f"`llmkit lens --train-tuned`")
    theirs = str(payload.get("fingerprint"))
    if theirs != checkpoint_fingerprint:
        raise TunedLensError(
            f"{path} was trained for other weights (fingerprint {theirs[:12]}) than "
            f"{checkpoint} (fingerprint {checkpoint_fingerprint[:12]}); retrain it for this "
            f"checkpoint with `llmkit lens --train-tuned`")
    lens = TunedLens(int(payload["n_layer"]), int(payload["n_embd"]))
    lens.load_state_dict(payload["state_dict"])
    lens.eval()
    return lens, dict(payload.get("info", {}))
