"""The logit lens while a language model trains: when layers start to matter.

`LensMonitor` reads a fixed set of validation windows through every layer's logit lens
(`llmkit.inspect.lens.layer_stats`, the same per-layer loop as `llmkit lens`) and logs,
per layer i (0 = embeddings, n_layer = the model's own output):

- `lens/kl_bits/layer_i`: KL(model || layer i) in bits per token (0 at the last layer);
- `lens/ce_bits/layer_i`: layer i's own validation cross-entropy in bits per token;
- `lens/top1_agree/layer_i`: how often layer i's top token is the model's.

A layer whose KL barely drops from the one before does little work; a model whose middle
layers already agree with the output is deeper than the data needs.
"""

from __future__ import annotations

import time
from typing import Any

import lightning as L
import torch

from llmkit.inspect.lens import layer_stats
from llmkit.models import CausalLM
from llmkit.trainer.callbacks.samples import evenly_spaced

METRICS = ("kl_bits", "ce_bits", "top1_agree")


def lens_tags(n_layer: int) -> list[str]:
    """Every tag the monitor writes, for n_layer blocks (n_layer + 1 layers each)."""
    return [f"lens/{m}/layer_{i}" for m in METRICS for i in range(n_layer + 1)]


class LensMonitor(L.Callback):
    """Per-layer logit lens on fixed validation windows, at each validation or every N steps.

    The windows are chosen once, spread evenly over the validation set, and read in chunks
    so that only one chunk's (chunk, T, V) logits are alive at a time. The numbers are
    read back to the host once per measurement. Rank zero logs; every other rank skips
    the work (the lens needs no collective operation).

    Args:
        num_windows: validation windows to read (>= 1).
        every_n_steps: 0 measures after every validation; N >= 1 every N optimizer steps.
        chunk: windows per forward pass.

    Example:
        >>> trainer = L.Trainer(callbacks=[LensMonitor(num_windows=8)],
        ...                     logger=TensorBoardLogger("runs"))
    """

    def __init__(self, num_windows: int = 8, every_n_steps: int = 0, chunk: int = 4) -> None:
        if not isinstance(num_windows, int) or num_windows < 1:
            raise ValueError(f"num_windows must be an integer >= 1, got {num_windows!r}")
        if not isinstance(every_n_steps, int) or every_n_steps < 0:
            raise ValueError(f"every_n_steps must be an integer >= 0, got {every_n_steps!r}")
        if chunk < 1:
            raise ValueError(f"chunk must be >= 1, got {chunk}")
        self.num_windows = num_windows
        self.every_n_steps = every_n_steps
        self.chunk = chunk
        self._windows: tuple[torch.Tensor, torch.Tensor] | None = None
        self._measured_step = -1
        self.last: dict[str, float] = {}  # the scalars of the latest measurement
        self.seconds: list[float] = []  # wall time of each measurement (benchmarks)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        if not trainer.loggers:
            raise RuntimeError("LensMonitor logs lens/* scalars, but the Trainer has no "
                               "logger; pass logger=TensorBoardLogger(...)")
        if not isinstance(getattr(pl_module, "model", None), CausalLM):
            raise RuntimeError(f"LensMonitor needs a language model (`model` a CausalLM); "
                               f"{type(pl_module).__name__} has none")

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.every_n_steps == 0 and not trainer.sanity_checking:
            self._measure(trainer, pl_module)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        step = trainer.global_step
        if self.every_n_steps and step % self.every_n_steps == 0:
            self._measure(trainer, pl_module)

    # --- the work ---------------------------------------------------------------------

    def _measure(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_step == self._measured_step or not trainer.is_global_zero:
            return
        self._measured_step = trainer.global_step
        start = time.perf_counter()
        x, y = self._fixed_windows(trainer, pl_module.device)
        model: CausalLM = pl_module.model
        was_training = model.training
        model.eval()
        sums: dict[str, torch.Tensor] = {}
        try:
            with torch.no_grad(), trainer.precision_plugin.forward_context():
                for i in range(0, x.size(0), self.chunk):
                    xs, ys = x[i:i + self.chunk], y[i:i + self.chunk]
                    for name, value in layer_stats(model, xs, ys).items():
                        weighted = value * ys.numel()
                        sums[name] = sums[name] + weighted if name in sums else weighted
        finally:
            model.train(was_training)
        tokens = y.numel()
        # this is a device-to-host sync point: once per measurement
        values = {name: (total / tokens).tolist() for name, total in sums.items()}
        self.last = {f"lens/{name}/layer_{i}": v
                     for name in METRICS for i, v in enumerate(values[name])}
        for logger in trainer.loggers:
            logger.log_metrics(self.last, step=trainer.global_step)
        self.seconds.append(time.perf_counter() - start)

    def _fixed_windows(self, trainer: L.Trainer,
                       device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        if self._windows is None:
            val_set = trainer.datamodule.val_set
            picks = evenly_spaced(len(val_set), self.num_windows)
            xs, ys = zip(*(val_set[i] for i in picks), strict=True)
            self._windows = torch.stack(xs), torch.stack(ys)
        x, y = self._windows
        return x.to(device), y.to(device)
