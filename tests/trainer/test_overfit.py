"""The overfitting monitor, on a real Trainer that memorises 8 random sequences, and on a
scripted sequence of losses for the rules that need exact numbers."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.data import DataLoader, TensorDataset

from llmkit.config import config_from_dict
from llmkit.models import GPTConfig
from llmkit.trainer.build import build_trainer
from llmkit.trainer.callbacks.overfit import OverfitMonitor
from llmkit.trainer.lm_module import LMModule

V, T = 32, 16


def _memorising_run(tmp_path: Path, monitor: OverfitMonitor, max_steps: int = 60
                    ) -> tuple[L.Trainer, TensorBoardLogger]:
    """A 1-layer, 32-wide LM on 8 random sequences (train) and 8 others (val)."""
    raw = {"project": {"name": "toy", "seed": 0},
           "model": {"size": "custom", "vocab_size": V, "n_layer": 1, "n_head": 2, "n_embd": 32,
                     "block_size": T, "dropout": 0.0},
           "training": {"batch_size": 8, "max_steps": max_steps, "lr": 1e-2, "warmup_steps": 0,
                        "lr_schedule": "constant", "weight_decay": 0.0, "val_every_steps": 10,
                        "val_batches": 1, "checkpoint_every_steps": 1000}}
    cfg = config_from_dict(raw, tmp_path)
    L.seed_everything(0, verbose=False)
    gpt = GPTConfig(vocab_size=V, n_layer=1, n_head=2, n_embd=32, block_size=T)
    module = LMModule(cfg, gpt, meta={})
    g = torch.Generator().manual_seed(0)
    train = torch.randint(0, V, (8, T + 1), generator=g)
    val = torch.randint(0, V, (8, T + 1), generator=g)
    # The same 8 sequences in every batch, for as many batches as the run needs.
    train_ds = TensorDataset(train[:, :-1].repeat(max_steps, 1), train[:, 1:].repeat(max_steps, 1))
    logger = TensorBoardLogger(save_dir=str(tmp_path), name="toy", default_hp_metric=False)
    trainer = build_trainer(cfg, logger, [monitor], progress=False)
    trainer.fit(module, train_dataloaders=DataLoader(train_ds, batch_size=8),
                val_dataloaders=DataLoader(TensorDataset(val[:, :-1], val[:, 1:]), batch_size=8))
    return trainer, logger


def _events(logger: TensorBoardLogger) -> EventAccumulator:
    acc = EventAccumulator(logger.log_dir, size_guidance={"tensors": 0, "scalars": 0})
    acc.Reload()
    return acc


def _texts(acc: EventAccumulator, tag: str) -> list[str]:
    names = [t for t in acc.Tags()["tensors"] if t.startswith(tag)]
    return [e.tensor_proto.string_val[0].decode() for n in names for e in acc.Tensors(n)]


def test_a_memorising_run_is_logged_and_flagged(tmp_path: Path) -> None:
    lines: list[str] = []
    monitor = OverfitMonitor(ratio_threshold=0.5, patience=3, log=lines.append)
    trainer, logger = _memorising_run(tmp_path, monitor)

    acc = _events(logger)
    gaps = acc.Scalars("overfit/gap")
    ratios = acc.Scalars("overfit/ratio")
    assert [e.step for e in gaps] == list(range(10, 61, 10))  # every validation, no sanity
    assert [e.step for e in ratios] == [e.step for e in gaps]
    for (_, train, val), gap, ratio in zip(monitor.history, gaps, ratios, strict=True):
        assert gap.value == pytest.approx(val - train, rel=1e-5)
        assert ratio.value == pytest.approx(train / val, rel=1e-5)
    assert gaps[-1].value > 2.0 and ratios[-1].value < 0.1  # memorised

    kinds = {w.split(":")[1].split()[0] for w in monitor.warnings}
    assert any("overfitting at step" in w for w in monitor.warnings)
    assert any("validation loss has risen for 3 validations in a row since step" in w
               for w in monitor.warnings)
    assert any("best checkpoint: " in w and "best-step" in w for w in monitor.warnings)
    assert len(monitor.warnings) == len(kinds) == 2  # each warns once, no ppl warning
    assert lines == monitor.warnings
    texts = _texts(acc, "overfit/warnings")
    assert sorted(texts) == sorted(monitor.warnings)
    assert _texts(acc, "overfit/summary") == [monitor.summary()]
    best_step, _, best = min(monitor.history, key=lambda h: h[2])
    assert monitor.summary().startswith(f"best val/loss {best:.4f} at step {best_step}")
    assert "overfitting seen: train/val loss ratio, rising val loss" in monitor.summary()
    assert trainer.global_step == 60  # warned, not stopped


def test_stop_on_overfit_stops_at_the_first_warning(tmp_path: Path) -> None:
    monitor = OverfitMonitor(ratio_threshold=0.5, patience=3, stop_on_overfit=True,
                             log=lambda _: None)
    trainer, _ = _memorising_run(tmp_path, monitor)
    assert len(monitor.warnings) == 1
    assert trainer.global_step == monitor.history[-1][0] < 60
    assert trainer.checkpoint_callback.best_model_path  # the best checkpoint is on disk


# --- scripted losses --------------------------------------------------------------------


class _Logger:
    def __init__(self) -> None:
        self.metrics: list[tuple[int, dict[str, float]]] = []
        self.texts: list[str] = []
        self.experiment = SimpleNamespace(
            add_text=lambda tag, text, global_step: self.texts.append(text))

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self.metrics.append((step, dict(metrics)))


def _fake_trainer() -> SimpleNamespace:
    strategy = SimpleNamespace(reduce=lambda t, reduce_op: t,
                               reduce_boolean_decision=lambda d, all: d)
    return SimpleNamespace(callback_metrics={}, loggers=[_Logger()], global_step=0,
                           sanity_checking=False, is_global_zero=True, strategy=strategy,
                           accumulate_grad_batches=1, checkpoint_callback=None,
                           should_stop=False)


def _drive(monitor: OverfitMonitor, losses: list[tuple[float, float]], every: int = 100
           ) -> SimpleNamespace:
    """Feed (train, val) pairs: two train batches then a validation, `every` steps apart."""
    trainer = _fake_trainer()
    for train, val in losses:
        for _ in range(2):
            trainer.global_step += every // 2
            monitor.on_train_batch_end(trainer, None, {"loss": torch.tensor(train)}, None, 0)
        trainer.callback_metrics = {"val/loss": torch.tensor(val)}
        monitor.on_validation_end(trainer, None)
    return trainer


def _quiet(**kw: Any) -> OverfitMonitor:
    return OverfitMonitor(log=lambda _: None, **kw)


def test_a_healthy_run_gives_no_warning() -> None:
    monitor = _quiet()
    trainer = _drive(monitor, [(4.0, 4.1), (3.5, 3.6), (3.0, 3.2), (2.8, 3.1), (2.7, 3.05)])
    assert monitor.warnings == [] and not trainer.should_stop
    assert monitor.summary() == ("best val/loss 3.0500 at step 500; last train/val "
                                 "2.7000/3.0500; no overfitting seen")


def test_rising_val_loss_needs_patience_and_falling_train_loss() -> None:
    losses = [(3.0, 3.0), (2.5, 2.8), (2.0, 2.9), (1.8, 3.0)]
    monitor = _quiet(patience=3)
    _drive(monitor, losses)
    assert monitor.warnings == []  # risen twice only
    monitor = _quiet(patience=3)
    trainer = _drive(monitor, [*losses, (1.6, 3.1)])
    (w,) = monitor.warnings
    assert ("validation loss has risen for 3 validations in a row since step 200 "
            "(2.8000 -> 3.1000 at step 500) while train loss fell (2.5000 -> 1.6000)") in w
    assert "no best checkpoint saved yet" in w
    assert not trainer.should_stop
    # both rising is a diverging run, not overfitting
    monitor = _quiet(patience=2)
    _drive(monitor, [(3.0, 3.0), (3.1, 3.2), (3.3, 3.4), (3.5, 3.6)])
    assert monitor.warnings == []


def test_ratio_warns_once_and_stops_when_asked() -> None:
    monitor = _quiet(ratio_threshold=0.5, stop_on_overfit=True)
    trainer = _drive(monitor, [(3.0, 3.2), (1.0, 2.5), (0.5, 2.6)])
    (w,) = monitor.warnings
    assert w == ("warning: overfitting at step 200: train loss 1.0000 is 0.40 x val loss "
                 "2.5000 (below 0.5): the model fits its training text much better than "
                 "unseen text; use a smaller model (`llmkit size`), more data, more dropout or "
                 "weight decay, or fewer steps")
    assert trainer.should_stop
    logged = trainer.loggers[0].metrics
    assert logged[1] == (200, {"overfit/gap": pytest.approx(1.5), "overfit/ratio":
                               pytest.approx(0.4)})
    assert trainer.loggers[0].texts == monitor.warnings


def test_tiny_losses_are_not_called_overfitting() -> None:
    monitor = _quiet(min_gap=0.1)
    _drive(monitor, [(0.01, 0.03)] * 3)
    assert monitor.warnings == [w for w in monitor.warnings if "ppl" in w]
    assert not any("overfitting at step" in w for w in monitor.warnings)


def test_perplexity_near_one_is_memorisation_or_leakage() -> None:
    monitor = _quiet(ppl_floor=1.5)
    _drive(monitor, [(0.05, 0.02)])
    (w,) = monitor.warnings
    assert w.startswith(f"warning: val ppl {math.exp(0.02):.2f} (val loss 0.0200) at step 100: "
                        "the model reproduces the validation text: memorisation, or leakage")
    monitor = _quiet(ppl_floor=None)
    _drive(monitor, [(0.05, 0.02)])
    assert monitor.warnings == []


def test_sanity_check_validation_is_ignored() -> None:
    monitor = _quiet()
    trainer = _fake_trainer()
    trainer.sanity_checking = True
    trainer.callback_metrics = {"val/loss": torch.tensor(0.01)}
    monitor.on_validation_end(trainer, None)
    assert monitor.history == [] and trainer.loggers[0].metrics == []


def test_arguments_are_checked_and_a_logger_is_required() -> None:
    with pytest.raises(ValueError, match="ratio_threshold"):
        OverfitMonitor(ratio_threshold=1.5)
    with pytest.raises(ValueError, match="patience"):
        OverfitMonitor(patience=0)
    with pytest.raises(ValueError, match="ppl_floor"):
        OverfitMonitor(ppl_floor=1.0)
    trainer = _fake_trainer()
    trainer.loggers = []
    with pytest.raises(RuntimeError, match="no logger"):
        OverfitMonitor().setup(trainer, None, "fit")
    with pytest.raises(RuntimeError, match="val/loss"):
        _drive(OverfitMonitor(val_key="val/missing"), [(1.0, 1.0)])
