"""Real training throughput: tokens actually processed per second, and MFU where known."""

from __future__ import annotations

import time
import warnings

import lightning as L
import torch
from lightning.fabric.utilities.throughput import get_available_flops

from llmkit.trainer.callbacks.steps import OptimizerSteps

# Dense peak FLOP/s (vendor data sheets, without sparsity) of GPUs that Lightning's table
# (`get_available_flops`) does not name, by the dtype the matmuls run in.
FALLBACK_PEAK_FLOPS: dict[str, dict[torch.dtype, float]] = {
    "H200": {torch.bfloat16: 989.4e12, torch.float16: 989.4e12, torch.float32: 494.7e12},
}


def peak_flops(device: torch.device, dtype: torch.dtype) -> float | None:
    """The device's peak FLOP/s for matmuls in `dtype`, or None where nobody knows it.

    Lightning's `get_available_flops` first (its table tells H100 SXM, PCIe and NVL
    apart, and counts float32 as TF32 when matmul precision allows it), then our fallback
    table for GPUs it does not know. CPUs: None (the benchmarks measure a matmul ceiling).
    """
    if device.type != "cuda":
        return None
    with warnings.catch_warnings():  # it warns about unknown GPUs; we have a fallback
        warnings.simplefilter("ignore")
        flops = get_available_flops(device, dtype)
    if flops:
        return float(flops)
    name = torch.cuda.get_device_name(device)
    for key, table in FALLBACK_PEAK_FLOPS.items():
        if key in name and dtype in table:
            if dtype == torch.float32 and torch.get_float32_matmul_precision() == "highest":
                return None  # plain float32, no TF32: not in the table
            return table[dtype]
    return None


def count_tokens(batch) -> int:
    """Real (non-padding) tokens in a batch, counted without a device sync where possible."""
    if isinstance(batch, dict):
        if "n_tokens" in batch:  # counted on the CPU by the collate function
            return int(batch["n_tokens"])
        return int(batch["mask"].sum())
    x, _ = batch
    return x.numel()  # LM windows hold no padding


class Throughput(L.Callback):
    """Log `throughput/tokens_per_sec` from the tokens actually processed.

    Only training time counts: each interval runs from the first batch after a logging
    step to a logging step, so what runs in between (text samples, checkpoints, the
    validation of that step) is left out, and so is any validation inside an interval.
    With `flops_per_token` and a known device peak, `throughput/mfu` (model FLOPs
    utilisation) is logged too.

    Args:
        log_every_steps: logging interval in optimizer steps (>= 1).
        flops_per_token: training FLOPs per token (forward + backward), or None.
        dtype: the dtype the matmuls run in (`matmul_dtype` of the precision): the peak
            that MFU divides by depends on it.

    Example:
        >>> cb = Throughput(log_every_steps=10, flops_per_token=6 * 1_000_000)
    """

    def __init__(self, log_every_steps: int, flops_per_token: float | None = None,
                 dtype: torch.dtype = torch.float32) -> None:
        if log_every_steps < 1:
            raise ValueError(f"log_every_steps must be >= 1, got {log_every_steps}")
        self.log_every_steps = log_every_steps
        self.flops_per_token = flops_per_token
        self.dtype = dtype
        self._peak: float | None = None
        self._tokens = 0
        self._t0: float | None = None  # start of the current interval; None: next batch
        self._steps = OptimizerSteps()
        self._val_start: float | None = None
        self.history: list[float] = []  # tokens/s of each logged interval

    def on_train_start(self, trainer, pl_module) -> None:
        self._peak = peak_flops(pl_module.device, self.dtype)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._steps.batch_started(trainer)
        if self._t0 is None:
            self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._tokens += count_tokens(batch) * trainer.world_size
        if not self._steps.stepped(trainer):
            return  # a micro-batch of a gradient accumulation: no optimizer step yet
        if trainer.global_step % self.log_every_steps == 0:
            self._log(trainer, pl_module)
            self._t0 = None  # the next interval starts at the next training batch

    def on_validation_start(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking and self._t0 is not None:
            self._val_start = time.perf_counter()

    def on_validation_end(self, trainer, pl_module) -> None:
        if self._val_start is not None and self._t0 is not None:
            self._t0 += time.perf_counter() - self._val_start  # not training time
        self._val_start = None

    def _log(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)  # once per interval, for honest timing
        now = time.perf_counter()
        assert self._t0 is not None
        elapsed = now - self._t0
        if elapsed <= 0 or self._tokens == 0:
            return
        rate = self._tokens / elapsed
        self.history.append(rate)
        metrics = {"throughput/tokens_per_sec": rate}
        if self._peak and self.flops_per_token:
            metrics["throughput/mfu"] = (rate * self.flops_per_token
                                         / (self._peak * trainer.world_size))
        # Straight to the loggers (rank zero only): `self.log` would be written only on the
        # Trainer's own log_every_n_steps grid, which need not match this interval.
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)
        self._tokens = 0
