"""Training health: per-layer activation and gradient scalars, and a guard against NaN/Inf.

`HealthMonitor` logs, every `every_n_steps` optimizer steps, each block's activation RMS and
gradient norm (`health/act_rms/layer_{i}`, `health/grad_norm/layer_{i}`). Its forward hooks
exist only during the step being measured, so the other steps pay nothing.

`NonFiniteGuard` stops training at the first non-finite loss, BEFORE the optimizer applies
the gradients of that step, so no weight and no checkpoint ever holds a NaN. It then
re-runs the forward pass of the step's batch with a hook on every layer and names the first
layer whose output was not finite, in a `NonFiniteLossError`.

When does the guard look? Every optimizer step, because only then is the offending batch
still at hand and the weights still those that produced it; a lazy check every N steps
would find weights already ruined by the step it missed. The cost is one host-device
synchronisation per optimizer step (reading one bool; under DDP one all-reduce of it).
On CPU that is free; on a GPU it stops the CPU from queuing the next step's kernels while
the current step finishes, which costs little once a step takes more than a few
milliseconds (every llmkit preset on a real batch), and at most a few percent for tiny
models that are bound by kernel launches. As a second line of defence the guard checks
every weight before any checkpoint is written (`on_save_checkpoint`): a checkpoint with a
NaN in it cannot be saved, whatever produced it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import nn

from llmkit.checkpoint import load_checkpoint
from llmkit.console import Log
from llmkit.errors import LlmkitError

_FIX = ("lower training.lr, check the data around this step, or set training.grad_clip "
        "(e.g. 1.0)")


class NonFiniteLossError(LlmkitError):
    """The training loss (or a weight) became NaN or Inf; names the step and the layer."""


def _blocks(pl_module: L.LightningModule) -> nn.ModuleList:
    """The transformer blocks of the wrapped model (`model.transformer.h`)."""
    h = getattr(getattr(getattr(pl_module, "model", None), "transformer", None), "h", None)
    if not isinstance(h, nn.ModuleList):
        raise RuntimeError(f"{type(pl_module).__name__} has no `model.transformer.h` blocks; "
                           f"the health callbacks need a llmkit GPT model")
    return h


class HealthMonitor(L.Callback):
    """Every `every_n_steps` optimizer steps, log each block's activation RMS and grad norm.

    Activation RMS is the root mean square of the block's output (the residual stream after
    block i), averaged over the micro-batches of the measured step. The gradient norm is
    the L2 norm of the gradients of block i's parameters, read in `on_before_optimizer_step`
    (after backward, after AMP unscaling, before clipping). Under FSDP each rank sees its
    shard only; rank zero's numbers are logged.

    A block whose gradient norm is exactly zero is reported once through `log`: it does not
    train (a wiring bug, or a frozen layer).

    Args:
        every_n_steps: measure every N optimizer steps (>= 1), step 0 included.
        log: where warnings go (the CLI passes click.echo).

    Example:
        >>> trainer = L.Trainer(callbacks=[HealthMonitor(cfg.logging.health_every_steps)],
        ...                     logger=TensorBoardLogger("runs"))
    """

    def __init__(self, every_n_steps: int, log: Log = print) -> None:
        if not isinstance(every_n_steps, int) or every_n_steps < 1:
            raise ValueError(f"every_n_steps must be an integer >= 1, got {every_n_steps!r}")
        self.every_n_steps = every_n_steps
        self.echo = log  # not `self.log`: Lightning sets that to the module's log()
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._act: dict[int, list[torch.Tensor]] = {}
        self._measured_step = -1
        self._zero_warned: set[int] = set()
        self.last: dict[str, float] = {}  # the scalars of the latest measurement

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        if not trainer.loggers:
            raise RuntimeError("HealthMonitor logs health/* scalars, but the Trainer has no "
                               "logger; pass logger=TensorBoardLogger(...)")
        _blocks(pl_module)  # fail now, not at the first measured step

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule,
                             batch: Any, batch_idx: int) -> None:
        step = trainer.global_step
        if step % self.every_n_steps == 0 and step != self._measured_step and not self._handles:
            self._attach(pl_module)

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule,
                                 optimizer: torch.optim.Optimizer) -> None:
        if self._handles:
            self._measure(trainer, pl_module)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule,
                     exception: BaseException) -> None:
        self._detach()

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._detach()

    # --- the work ---------------------------------------------------------------------

    def _attach(self, pl_module: L.LightningModule) -> None:
        self._act = {}
        for i, block in enumerate(_blocks(pl_module)):
            self._handles.append(block.register_forward_hook(self._act_hook(i)))

    def _act_hook(self, i: int) -> Callable[..., None]:
        def hook(module: nn.Module, args: Any, out: torch.Tensor) -> None:
            x = out.detach()  # a block returns one tensor: the residual stream after it
            # float32 accumulation without keeping a float32 copy of the activations
            rms = torch.linalg.vector_norm(x, dtype=torch.float32) / math.sqrt(x.numel())
            self._act.setdefault(i, []).append(rms)
        return hook

    def _detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _measure(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._detach()
        self._measured_step = trainer.global_step
        names: list[str] = []
        values: list[torch.Tensor] = []
        for i, block in enumerate(_blocks(pl_module)):
            if self._act.get(i):
                names.append(f"health/act_rms/layer_{i}")
                values.append(torch.stack(self._act[i]).mean())
            grads = [p.grad.detach() for p in block.parameters() if p.grad is not None]
            if grads:
                norms = torch.stack([torch.linalg.vector_norm(g, dtype=torch.float32)
                                     for g in grads])
                names.append(f"health/grad_norm/layer_{i}")
                values.append(torch.linalg.vector_norm(norms))
        self._act = {}
        if not values:
            return
        device = values[0].device
        numbers = torch.stack([v.to(device) for v in values]).tolist()  # one sync
        self.last = dict(zip(names, numbers, strict=True))
        for logger in trainer.loggers:
            logger.log_metrics(self.last, step=trainer.global_step)
        self._check_dead_layers(trainer)

    def _check_dead_layers(self, trainer: L.Trainer) -> None:
        for name, value in self.last.items():
            if not name.startswith("health/grad_norm/") or value != 0.0:
                continue
            i = int(name.rsplit("_", 1)[1])
            if i in self._zero_warned or not trainer.is_global_zero:
                continue
            self._zero_warned.add(i)
            self.echo(f"warning: block transformer.h.{i} has a zero gradient at step "
                     f"{trainer.global_step}: it does not train (a frozen layer, or its "
                     f"output never reaches the loss)")


class NonFiniteGuard(L.Callback):
    """Stop at the first non-finite loss, before its gradients are applied; name the layer.

    The loss of every micro-batch is tested on the device as it comes (`on_before_backward`)
    and the result read once per optimizer step in `on_before_optimizer_step`, which
    Lightning calls after backward and before gradient clipping and the optimizer step. A
    non-finite loss raises `NonFiniteLossError` there: the step is never applied, and as
    checkpoints are written after the step (on_train_batch_end, on_validation_end), the
    checkpoints on disk all predate it. The error names the step (the N-th optimizer step,
    the one not applied) and the first layer whose output was non-finite when the step's
    batch is run again through the model with a hook on the embeddings, every block,
    `ln_f` and the head.

    Before any checkpoint is written, every weight is checked too: a checkpoint holding a
    NaN raises instead of being saved (non-finite gradients behind a finite loss end up in
    the weights one step before the loss shows them).

    Args:
        last_checkpoint: the run's `last.ckpt`, named in the error when it exists.

    Example:
        >>> guard = NonFiniteGuard(run_dir / "checkpoints" / "last.ckpt")
        >>> trainer = L.Trainer(callbacks=[guard, LastCheckpoint(run_dir / "checkpoints", 100)])
    """

    def __init__(self, last_checkpoint: Path | str | None = None) -> None:
        self.last_checkpoint = Path(last_checkpoint) if last_checkpoint is not None else None
        self._losses: list[torch.Tensor] = []  # detached losses of this step's micro-batches
        self._batches: list[Any] = []  # ... and their batches, for the diagnosis
        self._finite: torch.Tensor | None = None  # on the device: all losses finite so far

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule,
                             batch: Any, batch_idx: int) -> None:
        self._batches.append(batch)

    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           loss: torch.Tensor) -> None:
        self._record_loss(loss)

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule,
                                 optimizer: torch.optim.Optimizer) -> None:
        self._check_step(trainer, pl_module)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        self._check_weights(trainer, pl_module)

    # --- the work ---------------------------------------------------------------------

    def _record_loss(self, loss: torch.Tensor) -> None:
        loss = loss.detach()
        self._losses.append(loss)
        ok = torch.isfinite(loss).all()  # stays on the device: no synchronisation here
        self._finite = ok if self._finite is None else self._finite & ok

    def _check_step(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        finite, losses, batches = self._finite, self._losses, self._batches
        self._finite, self._losses, self._batches = None, [], []
        if finite is None:
            return  # no backward this step (a skipped batch)
        bad = not bool(finite)  # the one synchronisation per optimizer step
        if trainer.world_size > 1:  # all ranks must stop together
            bad = trainer.strategy.reduce_boolean_decision(bad, all=False)
        if not bad:
            return
        value = next((float(v) for v in losses if not torch.isfinite(v).all()), math.nan)
        step = trainer.global_step + 1
        where = self._diagnose(trainer, pl_module, batches)
        raise NonFiniteLossError(
            f"non-finite loss ({_name(value)}) at step {step}: {where}; the step was not "
            f"applied{self._kept()}; {_FIX}")

    def _check_weights(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        name = _first_nonfinite_param(pl_module)
        if name is None:
            return
        raise NonFiniteLossError(
            f"weight {name} is non-finite at step {trainer.global_step} (gradients that were "
            f"not finite reached the optimizer); this checkpoint was not written"
            f"{self._kept()}; {_FIX}")

    def _kept(self) -> str:
        path = self.last_checkpoint
        if path is None or not path.is_file():
            return ""
        # Verified before it is called good: a run resumed from a damaged file must not
        # send the user back to it.
        try:
            load_checkpoint(path)
        except LlmkitError as e:
            return f"; the last checkpoint is not usable either: {e}"
        return f"; the last good checkpoint {path} (verified) is kept"

    def _diagnose(self, trainer: L.Trainer, pl_module: L.LightningModule,
                  batches: list[Any]) -> str:
        """Say where the non-finite value came from, in words."""
        bad_weight = _first_nonfinite_param(pl_module)
        if bad_weight is not None:
            return (f"weight {bad_weight} was already non-finite (the previous step applied "
                    f"non-finite gradients)")
        n_layer = len(_blocks(pl_module))
        for batch in batches:
            first, loss_finite = _rerun(trainer, pl_module, batch)
            if first is not None:
                return f"activations first became non-finite in {_describe(first, n_layer)}"
            if loss_finite is False:  # None: the re-run itself failed
                return ("every layer's output was finite, the loss computation was not "
                        "(check label_smoothing and the targets)")
        return ("every layer's output was finite when the batch was run again (an overflow "
                "under mixed precision, or a value that is not reproducible)")


def _rerun(trainer: L.Trainer, pl_module: L.LightningModule, batch: Any
           ) -> tuple[str | None, bool | None]:
    """Run `batch` through the module's training loss with hooks; (first non-finite module,
    loss finite?)."""
    order: list[str] = []

    def hook_for(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: Any, out: torch.Tensor) -> None:
            if not order and not bool(torch.isfinite(out).all()):
                order.append(name)
        return hook

    handles = [m.register_forward_hook(hook_for(name)) for name, m in _watched(pl_module.model)]
    try:
        with torch.no_grad(), trainer.precision_plugin.forward_context():
            loss = pl_module.training_loss(batch)
    except Exception:  # the diagnosis must never hide the real error
        return None, None
    finally:
        for handle in handles:
            handle.remove()
    return (order[0] if order else None), bool(torch.isfinite(loss).all())


def _watched(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """Embeddings, blocks, final norm and head(s), in the order the forward pass runs them."""
    t = model.transformer
    yield "transformer.wte", t.wte
    if t.wpe is not None:  # rotary architectures have no position table
        yield "transformer.wpe", t.wpe
    for i, block in enumerate(t.h):
        yield f"transformer.h.{i}", block
    yield "transformer.ln_f", t.ln_f
    for name, module in model.named_children():
        if name != "transformer":
            yield name, module


def _describe(name: str, n_layer: int) -> str:
    if name.startswith("transformer.h."):
        i = int(name.rsplit(".", 1)[1])
        return f"{name} (block {i} of {n_layer}, counting from 0)"
    if name in ("transformer.wte", "transformer.wpe"):
        return f"{name} (the embeddings: check the token ids of this batch)"
    return name


def _first_nonfinite_param(pl_module: L.LightningModule) -> str | None:
    """The name of the first parameter holding a NaN or Inf, or None (one sync when fine)."""
    named = [(n, p) for n, p in pl_module.named_parameters() if p.numel()]
    if not named:
        return None
    flags = torch.stack([torch.isfinite(p.detach()).all() for _, p in named])
    if bool(flags.all()):
        return None
    return named[int((~flags).nonzero()[0, 0])][0]


def _name(value: float) -> str:
    if math.isnan(value):
        return "nan"
    return "inf" if value > 0 else "-inf"
