"""DDP on CPU: `llmkit train -o training.devices=2 -o training.strategy=ddp` runs two
processes that talk through gloo; Lightning starts the second one by running the installed
`llmkit` command again. Each rank reads its own share of the training stream, so two ranks
with batch 4 train the same model as one device with batch 8."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from conftest import RunEvents

from llmkit.config import Config
from llmkit.trainer.run import train

pytestmark = pytest.mark.slow

LLMKIT = Path(sys.executable).with_name("llmkit")  # the console script of this environment
STEPS = 10
# No dropout: the two runs must compute the same function of the same data.
CONFIG = {
    "model": {"dropout": 0.0, "n_embd": 32},
    "training": {"max_steps": STEPS, "warmup_steps": 2, "val_every_steps": 5,
                 "checkpoint_every_steps": 5},
    "logging": {"log_every_steps": 1, "sample_every_steps": 5},
}


def _scalars(run_dir: Path, tag: str) -> list[tuple[int, float]]:
    return RunEvents(run_dir).scalars(tag)


def _weights(ckpt: Path) -> dict[str, torch.Tensor]:
    return torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]


def test_ddp_with_two_cpu_processes_trains_like_one_device(
        tiny_project: Callable[..., Config], tmp_path: Path) -> None:
    cfg = tiny_project(config=CONFIG, name="ddp")
    single_root = tmp_path / "single"
    shutil.copytree(cfg.root, single_root)

    # Validation scores val_batches x batch_size windows: 16 in both runs.
    command = [str(LLMKIT), "train", "-o", "training.devices=2", "-o", "training.strategy=ddp",
               "-o", "training.batch_size=4", "-o", "training.val_batches=4"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(command, cwd=cfg.root, env=env, capture_output=True, text=True,
                          timeout=120)
    output = f"--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-3000:]}"
    assert proc.returncode == 0, output
    assert "distributed_backend=gloo" in proc.stderr, output
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in proc.stderr, output
    assert proc.stdout.count(f"training finished at step {STEPS}") == 1  # rank 0 reports

    runs = cfg.root / "runs" / "ddp"
    assert [p.name for p in runs.iterdir()] == ["version_0"]
    run_dir = runs / "version_0"
    assert [s for s, _ in _scalars(run_dir, "train/loss")] == list(range(STEPS))
    ddp_ckpt = run_dir / "checkpoints" / "last.ckpt"
    saved = torch.load(ddp_ckpt, map_location="cpu", weights_only=True)
    assert saved["global_step"] == STEPS
    assert list((run_dir / "checkpoints").glob("best-*.ckpt"))

    # Rank r's batch j is global batch 2j + r: together the two ranks see, at every step,
    # the 8 windows that one device with batch 8 sees, and DDP averages their gradients.
    single = train(single_root, ["training.batch_size=8", "training.val_batches=2"],
                   log=lambda _: None, progress=False)
    ddp_weights, single_weights = _weights(ddp_ckpt), _weights(single.last_checkpoint)
    assert ddp_weights.keys() == single_weights.keys()
    for name, value in single_weights.items():
        torch.testing.assert_close(ddp_weights[name], value, rtol=1e-4, atol=1e-5, msg=name)
    ddp_val, single_val = _scalars(run_dir, "val/loss"), _scalars(single.run_dir, "val/loss")
    assert [s for s, _ in ddp_val] == [s for s, _ in single_val] == [4, 9]
    for (_, a), (_, b) in zip(ddp_val, single_val, strict=True):
        assert a == pytest.approx(b, rel=1e-5)
