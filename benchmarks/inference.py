"""Inference speed: `llmkit generate` start-up, KV-cache generation, batched `predict`.

    python benchmarks/inference.py [--repeats 3] [--new-tokens 256] [--device cpu|cuda]

Prints, for each figure, the measured numbers and the ratio that has a goal:
- the whole `llmkit generate` command for a tiny model (32 new tokens), as a subprocess,
  against `python -c "import torch"` on the same machine (goal: at most 1.3x);
- time to first token and tokens/s of generation for the tiny and small presets, with
  and without the KV cache (goal at the small preset, 256 new tokens: cached >= 3x);
- `predict` examples/s by batch size on the span sample data.

Checkpoints are real (`llmkit train` for one step on the sample data): speed does not
depend on how well a model is trained. Medians over `--repeats`; measure on a quiet
machine, since other jobs on the cores change the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from llmkit.config import load_config
from llmkit.inference import autocast, inference_dtype, load_model, resolve_device
from llmkit.scaffold import create_project
from llmkit.tokenizer import EOS_ID
from llmkit.trainer.run import train

ONE_STEP = ["training.max_steps=1", "training.val_every_steps=1", "training.val_batches=1",
            "logging.sample_every_steps=1000", "logging.health_every_steps=1000"]
PROMPT = "ROMEO: But soft, what light"


def trained_project(parent: Path, name: str, task: str, size: str) -> Path:
    """A sample project trained for one step (a real checkpoint of the preset's shape)."""
    root = create_project(name, parent, task=task, size=size).root
    train(root, ONE_STEP, log=lambda m: None, progress=False)
    return root


def wall(cmd: list[str], cwd: Path, repeats: int) -> float:
    """Median wall time of a command, in seconds."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run(cmd, cwd=cwd, check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def startup(root: Path, repeats: int) -> None:
    llmkit = str(Path(sys.executable).with_name("llmkit"))
    torch_s = wall([sys.executable, "-c", "import torch"], root, repeats)
    gen_s = wall([llmkit, "generate", "--prompt", PROMPT, "--max-new-tokens", "32",
                  "--seed", "0", "--device", "cpu"], root, repeats)
    print(f"python -c 'import torch':            {torch_s:6.2f} s")
    print(f"llmkit generate (tiny, 32 tokens):   {gen_s:6.2f} s")
    print(f"ratio generate / import torch: {gen_s / torch_s:.2f} (goal <= 1.3)")


@torch.no_grad()
def generation(root: Path, new_tokens: int, repeats: int, device: torch.device) -> float:
    """Time to first token and tokens/s, cached and not; returns the tokens/s ratio."""
    trained = load_model(load_config(root), log=lambda m: None)
    model = trained.model.to(device)
    idx = torch.tensor([[EOS_ID, *trained.tok.encode(PROMPT)]], device=device)
    dtype = inference_dtype(trained.cfg.training.precision, device)
    name = trained.cfg.model.size
    rates = {}
    for use_cache in (True, False):
        def run(n: int, use_cache: bool = use_cache) -> float:
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            with autocast(device, dtype):  # greedy, no EOS stop: exactly n tokens
                model.generate(idx, n, temperature=0, use_cache=use_cache)
            if device.type == "cuda":
                torch.cuda.synchronize()
            return time.perf_counter() - t0

        run(4)  # warm-up
        ttft = statistics.median(run(1) for _ in range(repeats))
        total = statistics.median(run(new_tokens) for _ in range(repeats))
        rates[use_cache] = new_tokens / total
        label = "cached  " if use_cache else "uncached"
        print(f"{name:>5} {label}: first token {ttft * 1000:7.1f} ms, {new_tokens} tokens "
              f"in {total:6.2f} s = {rates[use_cache]:8.1f} tokens/s")
    ratio = rates[True] / rates[False]
    print(f"{name:>5} ratio cached / uncached tokens/s: {ratio:.2f}")
    return ratio


@torch.no_grad()
def prediction(root: Path, repeats: int, device: torch.device) -> None:
    from llmkit.commands.predict import predict_batch

    trained = load_model(load_config(root), log=lambda m: None)
    model = trained.model.to(device)
    lines = (root / "data" / "val.jsonl").read_text(encoding="utf-8").splitlines()
    texts = [(json.loads(x)["text"], f"val.jsonl:{i}") for i, x in enumerate(lines, 1)][:256]
    dtype = inference_dtype(trained.cfg.training.precision, device)
    base = None
    for batch_size in (1, 8, 32, 128):
        def run(batch_size: int = batch_size) -> float:
            t0 = time.perf_counter()
            with autocast(device, dtype):
                for s in range(0, len(texts), batch_size):
                    predict_batch(model, trained.tok, trained.cfg, texts[s:s + batch_size],
                                  device)
            return time.perf_counter() - t0

        rate = len(texts) / statistics.median(run() for _ in range(repeats))
        base = base or rate
        print(f"predict batch {batch_size:>3}: {rate:8.1f} examples/s ({rate / base:.2f}x "
              f"batch 1)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        parent = Path(tmp)
        tiny = trained_project(parent, "tiny", "lm", "tiny")
        startup(tiny, args.repeats)
        generation(tiny, args.new_tokens, args.repeats, device)
        small = trained_project(parent, "small", "lm", "small")
        ratio = generation(small, args.new_tokens, args.repeats, device)
        print(f"ratio small cached / uncached ({args.new_tokens} new tokens): {ratio:.2f} "
              f"(goal >= 3)")
        spans = trained_project(parent, "spans", "span", "tiny")
        prediction(spans, args.repeats, device)


if __name__ == "__main__":
    main()
