"""On a GPU (skipped without CUDA): bf16-mixed training with Muon and a rotary model runs
and logs its throughput; the Newton-Schulz step runs in bfloat16 there."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from conftest import RunEvents

from llmkit.config import Config
from llmkit.trainer.optim import orthogonalize
from llmkit.trainer.run import train

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@cuda
def test_orthogonalize_runs_in_bf16_on_the_gpu() -> None:
    g = torch.randn(64, 32, device="cuda")
    out = orthogonalize(g)
    assert out.dtype == torch.bfloat16 and out.shape == g.shape
    s = torch.linalg.svdvals(out.float())
    assert s.max() < 1.3


@cuda
def test_bf16_training_on_the_gpu_logs_throughput(tiny_project: Callable[..., Config]) -> None:
    cfg = tiny_project(config={
        "model": {"arch": "qwen3"},
        "training": {"max_steps": 6, "precision": "bf16-mixed", "optimizer": "muon",
                     "devices": 1},
        "logging": {"log_every_steps": 2}})
    result = train(cfg.root, log=lambda _: None, progress=False)
    assert result.global_step == 6
    events = RunEvents(result.run_dir)
    assert [s for s, _ in events.scalars("train/loss")] == [1, 3, 5]
    assert len(events.scalars("throughput/tokens_per_sec")) == 3
