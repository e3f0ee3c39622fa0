"""Training throughput: llmkit's Lightning path against a minimal plain-PyTorch loop.

Both train the same model (llmkit's CausalLM, the configured preset) on the same prepared
data, with the same optimizer, schedule, gradient clipping, batch size and context, for the
same number of steps. Tokens per second are measured over the steps after a warm-up, in
one process, alternating the two paths so that both see the same machine state.

    python benchmarks/throughput.py [--steps 120] [--warmup 20] [--repeats 2]

The last line is `ratio: X` (llmkit tokens/s divided by the plain loop's); the target on
CPU is 0.95 or better.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch

from llmkit.config import load_config
from llmkit.data.prepare import prepare_data
from llmkit.models import CausalLM
from llmkit.models.from_config import gpt_config
from llmkit.scaffold import create_project
from llmkit.trainer.optim import build_optimizer
from llmkit.trainer.run import train
from llmkit.vocab_sync import ensure_tokenizer


class _Window(L.Callback):
    """Wall time of the training steps after `warmup` (validation excluded: none runs)."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.t0 = self.t1 = 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.warmup and not self.t0:
            self.t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.t1 = time.perf_counter()


def run_llmkit(root: Path, overrides: list[str], steps: int, warmup: int) -> float:
    """Tokens/s of `llmkit train` (the real run path: logging, callbacks, checkpoints)."""
    window = _Window(warmup)
    train(root, overrides, log=lambda m: None, progress=True, extra_callbacks=[window])
    cfg = load_config(root, overrides)
    tokens = (steps - warmup) * cfg.training.batch_size * cfg.model.block_size
    return tokens / (window.t1 - window.t0)


def run_plain(root: Path, overrides: list[str], steps: int, warmup: int) -> float:
    """Tokens/s of a minimal loop: random windows from the memmap, forward, backward, step."""
    cfg = load_config(root, overrides)
    cfg, tok = ensure_tokenizer(cfg, log=lambda m: None)
    prepared = prepare_data(cfg, tok, log=lambda m: None, progress=False)
    ids = np.load(prepared.train, mmap_mode="r")
    torch.manual_seed(cfg.project.seed)
    model = CausalLM(gpt_config(cfg, tok))
    model.train()
    optimizer, scheduler = build_optimizer(model, cfg.training)
    B, T = cfg.training.batch_size, cfg.model.block_size
    rng = np.random.default_rng(cfg.project.seed)
    t0 = 0.0
    for step in range(steps):
        if step == warmup:
            t0 = time.perf_counter()
        starts = rng.integers(0, len(ids) - T - 1, size=B)
        chunk = np.stack([ids[s:s + T + 1] for s in starts]).astype(np.int64)
        x, y = torch.from_numpy(chunk[:, :-1]), torch.from_numpy(chunk[:, 1:])
        _, loss = model(x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.training.grad_clip)
        optimizer.step()
        scheduler.step()
    return (steps - warmup) * B * T / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        root = create_project("bench", Path(tmp)).root  # the sample Shakespeare, tiny preset
        overrides = [f"training.max_steps={args.steps}",
                     f"training.val_every_steps={args.steps * 10}",  # no validation inside
                     f"training.checkpoint_every_steps={args.steps * 10}",
                     f"logging.sample_every_steps={args.steps * 10}",
                     f"logging.health_every_steps={args.steps * 10}"]
        cfg = load_config(root, overrides)
        print(f"model: {cfg.model.size} preset, batch {cfg.training.batch_size} x context "
              f"{cfg.model.block_size}; {args.steps} steps, {args.warmup} warm-up; torch "
              f"{torch.__version__}, {torch.get_num_threads()} threads", flush=True)
        plain, ours = [], []
        for r in range(args.repeats):
            plain.append(run_plain(root, overrides, args.steps, args.warmup))
            ours.append(run_llmkit(root, overrides, args.steps, args.warmup))
            print(f"repeat {r + 1}: plain {plain[-1]:,.0f} tok/s, llmkit {ours[-1]:,.0f} tok/s",
                  file=sys.stderr, flush=True)
        p, o = statistics.median(plain), statistics.median(ours)
        print(f"plain PyTorch loop: {p:,.0f} tokens/s (median of {args.repeats})")
        print(f"llmkit (Lightning): {o:,.0f} tokens/s (median of {args.repeats})")
        print(f"ratio: {o / p:.3f}")


if __name__ == "__main__":
    main()
