"""The GPU checks, as one short script for a machine with CUDA (CI has none: it exits 0).

    python benchmarks/gpu.py [--steps 60] [--workdir DIR]

1. `base` preset (GPT-2 small shape, context 1024) on the sample Shakespeare with
   bf16-mixed, torch.compile and fused AdamW: tokens/s and MFU from the run's
   TensorBoard scalars (`throughput/tokens_per_sec`, `throughput/mfu`; the peak is
   Lightning's table for the GPU and dtype, with llmkit's fallback for e.g. H200).
2. The first steps' training loss in bf16-mixed and in 32-true from the same seed: equal
   within bf16 noise.
3. `llmkit eval` and `llmkit generate` of the bf16 checkpoint, on the GPU.
4. With two or more GPUs: a two-process DDP run (`training.devices=2`).

Each check prints one `check <name>: ok|FAILED ...` line; the exit status is 1 if any failed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import torch


def _llmkit(root: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "llmkit.cli", "-C", str(root), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def _scalars(run_dir: Path, tag: str) -> list[tuple[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir))
    acc.Reload()
    if tag not in acc.Tags().get("scalars", []):
        return []
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def _train(root: Path, steps: int, *overrides: str) -> Path:
    from llmkit.trainer.run import train

    common = [f"training.max_steps={steps}", "training.val_every_steps=1000000",
              "training.checkpoint_every_steps=1000000", "logging.sample_every_steps=1000000",
              "logging.health_every_steps=1000000", "logging.log_every_steps=10"]
    result = train(root, [*common, *overrides], log=lambda m: None, progress=False)
    return result.run_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA device: the GPU checks are skipped")
        return 0

    from llmkit.scaffold import create_project

    failed = []

    def check(name: str, ok: bool, detail: str) -> None:
        print(f"check {name}: {'ok' if ok else 'FAILED'} {detail}", flush=True)
        if not ok:
            failed.append(name)

    print(f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}, torch "
          f"{torch.__version__}", flush=True)
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        base = create_project("gpubase", Path(tmp), size="base").root
        fast = _train(base, args.steps, "training.precision=bf16-mixed",
                      "training.compile=true", "training.devices=1")
        rate = _scalars(fast, "throughput/tokens_per_sec")
        mfu = _scalars(fast, "throughput/mfu")
        late = [v for s, v in mfu if s > args.steps // 2]  # after compilation and warm-up
        check("base bf16 compile fused: MFU >= 50%", bool(late) and max(late) >= 0.5,
              f"tokens/s {[round(v) for _, v in rate]}, MFU {[round(v, 3) for _, v in mfu]}")

        f32_root = create_project("gpuf32", Path(tmp), size="base").root
        f32 = _train(f32_root, 20, "training.precision=32-true", "logging.log_every_steps=1",
                     "training.devices=1")
        bf16 = _train(base, 20, "training.precision=bf16-mixed", "logging.log_every_steps=1",
                      "training.devices=1")
        a, b = _scalars(bf16, "train/loss"), _scalars(f32, "train/loss")
        diffs = [abs(x - y) / y for (_, x), (_, y) in zip(a, b, strict=False)]
        check("bf16-mixed loss equals float32 within 2% for 20 steps",
              bool(diffs) and max(diffs) < 0.02, f"max relative difference "
              f"{max(diffs) if diffs else float('nan'):.4f}")

        ev = _llmkit(base, "eval", "--json")
        check("eval on the GPU", ev.returncode == 0, ev.stdout.strip()[-300:] or ev.stderr[-300:])
        gen = _llmkit(base, "generate", "--prompt", "ROMEO:", "--max-new-tokens", "40")
        check("generate on the GPU", gen.returncode == 0 and len(gen.stdout) > 10,
              gen.stdout.strip()[-200:] or gen.stderr[-300:])

        if torch.cuda.device_count() >= 2:
            ddp_root = create_project("gpuddp", Path(tmp), size="tiny").root
            run = _llmkit(ddp_root, "train", "--max-steps", "20", "-o", "training.devices=2",
                          "-o", "training.strategy=ddp")
            check("two-process DDP", run.returncode == 0, run.stderr.strip()[-300:])
        else:
            print("one GPU: the DDP check is skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
