"""Health scalars per layer, and the NaN guard: stop before a NaN step is applied or saved."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.data import DataLoader, TensorDataset

from llmkit.checkpoint import load_checkpoint
from llmkit.config import config_from_dict
from llmkit.errors import LlmkitError
from llmkit.models import GPTConfig
from llmkit.trainer.build import build_trainer
from llmkit.trainer.callbacks.checkpointing import LastCheckpoint
from llmkit.trainer.callbacks.health import HealthMonitor, NonFiniteGuard, NonFiniteLossError
from llmkit.trainer.lm_module import LMModule

V, T, N_LAYER = 32, 16, 3


def _run(tmp_path: Path, callbacks: list[L.Callback], max_steps: int,
         module_hook: Any = None) -> tuple[L.Trainer, TensorBoardLogger, LMModule]:
    raw = {"project": {"name": "toy", "seed": 0},
           "model": {"size": "custom", "vocab_size": V, "n_layer": N_LAYER, "n_head": 2,
                     "n_embd": 16, "block_size": T, "dropout": 0.0},
           "training": {"batch_size": 4, "max_steps": max_steps, "lr": 1e-3,
                        "warmup_steps": 0, "val_every_steps": 100, "val_batches": 1}}
    cfg = config_from_dict(raw, tmp_path)
    L.seed_everything(0, verbose=False)
    gpt = GPTConfig(vocab_size=V, n_layer=N_LAYER, n_head=2, n_embd=16, block_size=T)
    module = LMModule(cfg, gpt, meta={})
    ids = torch.randint(0, V, (4 * max_steps, T + 1), generator=torch.Generator().manual_seed(0))
    data = DataLoader(TensorDataset(ids[:, :-1], ids[:, 1:]), batch_size=4)
    logger = TensorBoardLogger(save_dir=str(tmp_path), name="toy", default_hp_metric=False)
    trainer = build_trainer(cfg, logger, callbacks, progress=False)
    if module_hook is not None:
        module_hook(trainer, module)
    trainer.fit(module, train_dataloaders=data, val_dataloaders=DataLoader(
        TensorDataset(ids[:4, :-1], ids[:4, 1:]), batch_size=4))
    return trainer, logger, module


class _HookCounter(L.Callback):
    """Records how many forward hooks block 0 carries at the start of each step."""

    def __init__(self) -> None:
        self.seen: dict[int, int] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.seen[trainer.global_step] = len(pl_module.model.transformer.h[0]._forward_hooks)


def test_health_scalars_per_layer_only_on_measured_steps(tmp_path: Path) -> None:
    monitor = HealthMonitor(every_n_steps=2)
    counter = _HookCounter()  # after the monitor: sees the hooks it attached
    trainer, logger, module = _run(tmp_path, [monitor, counter, NonFiniteGuard()], max_steps=5)
    acc = EventAccumulator(logger.log_dir, size_guidance={"scalars": 0})
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    for i in range(N_LAYER):
        for kind in ("act_rms", "grad_norm"):
            events = acc.Scalars(f"health/{kind}/layer_{i}")
            assert [e.step for e in events] == [0, 2, 4]
            assert all(e.value > 0 for e in events)
    assert f"health/act_rms/layer_{N_LAYER}" not in tags
    # each layer reports its own numbers (problem 5: not the last layer's, n times)
    last = [monitor.last[f"health/grad_norm/layer_{i}"] for i in range(N_LAYER)]
    assert len(set(last)) == N_LAYER
    acts = [monitor.last[f"health/act_rms/layer_{i}"] for i in range(N_LAYER)]
    assert len(set(acts)) == N_LAYER
    # hooks exist during measured steps only, and none are left behind
    assert counter.seen == {0: 1, 1: 0, 2: 1, 3: 0, 4: 1}
    assert all(not b._forward_hooks for b in module.model.transformer.h)


def test_health_grad_norm_is_the_norm_of_the_blocks_gradients() -> None:
    gpt = GPTConfig(vocab_size=V, n_layer=2, n_head=2, n_embd=16, block_size=T)
    cfg = config_from_dict({"model": {"size": "custom", "vocab_size": V}}, Path("."))
    module = LMModule(cfg, gpt, meta={})
    monitor = HealthMonitor(every_n_steps=1)
    logged: list[dict[str, float]] = []
    trainer = SimpleNamespace(global_step=0, is_global_zero=True, loggers=[SimpleNamespace(
        log_metrics=lambda metrics, step: logged.append(metrics))])
    monitor.on_train_batch_start(trainer, module, None, 0)
    x = torch.randint(0, V, (2, T), generator=torch.Generator().manual_seed(1))
    _, loss = module.model(x, x)
    loss.backward()
    monitor.on_before_optimizer_step(trainer, module, None)
    for i, block in enumerate(module.model.transformer.h):
        want = torch.cat([p.grad.flatten() for p in block.parameters()]).norm()
        assert logged[0][f"health/grad_norm/layer_{i}"] == pytest.approx(float(want), rel=1e-5)
        with torch.no_grad():
            hidden = module.model.transformer.inspect(x).hidden
        rms = hidden[i + 1].pow(2).mean().sqrt()
        assert logged[0][f"health/act_rms/layer_{i}"] == pytest.approx(float(rms), rel=1e-5)


def test_a_nan_stops_before_the_step_and_names_the_layer(tmp_path: Path) -> None:
    ckpt_dir = tmp_path / "ckpt"
    nan_from = 3  # the forward pass of the 4th optimizer step goes bad

    def poison(trainer: L.Trainer, module: LMModule) -> None:
        def hook(block, args, out):
            if trainer.global_step >= nan_from:
                return out * float("nan")
            return None
        module.model.transformer.h[1].register_forward_hook(hook)

    last = LastCheckpoint(ckpt_dir, every_n_steps=1)
    guard = NonFiniteGuard(ckpt_dir / "last.ckpt")
    with pytest.raises(NonFiniteLossError) as info:
        _run(tmp_path, [last, guard], max_steps=10, module_hook=poison)
    message = str(info.value)
    assert isinstance(info.value, LlmkitError)
    assert message.startswith("non-finite loss (nan) at step 4: activations first became "
                              "non-finite in transformer.h.1 (block 1 of 3, counting from 0)")
    assert f"the last good checkpoint {ckpt_dir / 'last.ckpt'} (verified) is kept" in message
    assert "training.lr" in message

    ckpt = load_checkpoint(ckpt_dir / "last.ckpt")
    assert ckpt["global_step"] == nan_from < 4
    assert all(torch.isfinite(t).all() for t in ckpt["state_dict"].values()
               if t.is_floating_point())


def test_no_checkpoint_with_a_non_finite_weight_is_written(tmp_path: Path) -> None:
    gpt = GPTConfig(vocab_size=V, n_layer=2, n_head=2, n_embd=16, block_size=T)
    cfg = config_from_dict({"model": {"size": "custom", "vocab_size": V}}, tmp_path)
    module = LMModule(cfg, gpt, meta={})
    guard = NonFiniteGuard()
    trainer = SimpleNamespace(global_step=12)
    guard.on_save_checkpoint(trainer, module, {})  # finite: nothing happens
    with torch.no_grad():
        module.model.transformer.h[1].mlp.c_fc.weight[0, 0] = float("inf")
    with pytest.raises(NonFiniteLossError, match=r"weight model\.transformer\.h\.1\.mlp\.c_fc"
                                                 r"\.weight is non-finite at step 12"):
        guard.on_save_checkpoint(trainer, module, {})


def test_health_monitor_checks_its_arguments_and_needs_a_logger() -> None:
    with pytest.raises(ValueError, match="every_n_steps"):
        HealthMonitor(every_n_steps=0)
    trainer = SimpleNamespace(loggers=[])
    with pytest.raises(RuntimeError, match="no logger"):
        HealthMonitor(every_n_steps=1).setup(trainer, None, "fit")


def test_the_guard_reruns_the_training_loss_with_its_label_smoothing(tmp_path: Path) -> None:
    # Two token ids whose logits are -3e38, finite, and never in the data: plain
    # cross-entropy ignores them, label smoothing averages their log-probabilities over
    # the vocabulary and overflows to inf. Every layer is finite; only the loss is not, and
    # the guard can say so only if its re-run computes the loss training computed.
    raw = {"project": {"name": "toy", "seed": 0},
           "model": {"size": "custom", "vocab_size": V, "n_layer": 2, "n_head": 2,
                     "n_embd": 16, "block_size": T, "dropout": 0.0, "bias": True,
                     "arch": "gpt2"},
           "training": {"batch_size": 4, "max_steps": 3, "lr": 1e-3, "warmup_steps": 0,
                        "val_every_steps": 100, "val_batches": 1, "label_smoothing": 0.1,
                        "optimizer": "adamw"}}
    cfg = config_from_dict(raw, tmp_path)
    L.seed_everything(0, verbose=False)
    gpt = GPTConfig(vocab_size=V, n_layer=2, n_head=2, n_embd=16, block_size=T, bias=True)
    module = LMModule(cfg, gpt, meta={})
    with torch.no_grad():
        ln_f = module.model.transformer.ln_f
        ln_f.weight[0], ln_f.bias[0] = 0.0, 1.0  # feature 0 of the final norm is always 1
        for k in (V - 2, V - 1):  # the head is tied to these embedding rows
            module.model.transformer.wte.weight[k] = 0.0
            module.model.transformer.wte.weight[k, 0] = -3e38
    ids = torch.randint(0, V - 2, (12, T + 1), generator=torch.Generator().manual_seed(0))
    data = DataLoader(TensorDataset(ids[:, :-1], ids[:, 1:]), batch_size=4)
    logger = TensorBoardLogger(save_dir=str(tmp_path), name="toy", default_hp_metric=False)
    trainer = build_trainer(cfg, logger, [NonFiniteGuard()], progress=False)
    with pytest.raises(NonFiniteLossError) as info:
        trainer.fit(module, train_dataloaders=data, val_dataloaders=DataLoader(
            TensorDataset(ids[:4, :-1], ids[:4, 1:]), batch_size=4))
    assert str(info.value).startswith("non-finite loss (inf) at step 1: every layer's output "
                                      "was finite, the loss computation was not")
