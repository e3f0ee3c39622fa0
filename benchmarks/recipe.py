"""The small character-level Shakespeare recipe: `llmkit train` against a plain PyTorch loop.

The recipe: 4 layers, 4 heads, width 128, context 64, batch 12, 2000 steps, 100 warm-up
steps, cosine decay to 0.1 x lr, no dropout, on the standard split of Tiny Shakespeare
(blank lines collapsed to one newline, the first 90% of the text to train on, the last 10%
to validate on: `examples/shakespeare/data/train.txt` and `val.txt`).

Two runs share one process and the same machine state, in lockstep: llmkit trains through
`llmkit.trainer.run.train` with the shipped defaults of a `tiny` project of that shape
(optimizer, learning rate, architecture are llmkit's choice), and every `--eval-every`
steps a callback pauses it, runs the same number of steps of the reference (a GPT-2-style
model written below, AdamW (0.9, 0.99), lr 1e-3, weight decay 0.1, float32, clipping 1.0),
and measures both on the WHOLE validation text (the same non-overlapping windows of 64 for
both). Training time excludes these evaluations and llmkit's own validations; it includes
everything else llmkit does (logging, samples, checkpoints).

    python benchmarks/recipe.py [--steps 2000] [--eval-every 200] [-o key=value ...]

Prints the curves, both final validation losses, both tokens/s, `ratio:` (llmkit's
tokens/s over the reference's) and `time_to_reference_loss` for both: the training time
after which each first measured a validation loss at or below the reference's final one
(to the resolution of --eval-every). `--no-reference` trains llmkit alone (lever sweeps).
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
import torch.nn as nn
from torch.nn import functional as F

from llmkit.config import load_config
from llmkit.models import GPTConfig
from llmkit.models.from_config import gpt_config
from llmkit.trainer.build import flops_per_token
from llmkit.trainer.run import train
from llmkit.vocab_sync import ensure_tokenizer

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "examples" / "shakespeare" / "data"
BLOCK, BATCH = 64, 12

PROJECT_YAML = """\
project:
  name: recipe
  seed: 1337
data:
  train: [data/train.txt]
  val: [data/val.txt]
tokenizer:
  kind: char
  min_frequency: 1
model:
  size: tiny
  block_size: 64
  dropout: 0.0
training:
  batch_size: 12
  max_steps: {steps}
  warmup_steps: 100
  min_lr_ratio: 0.1
  val_every_steps: 250
  checkpoint_every_steps: 500
logging:
  log_every_steps: 25
  sample_every_steps: 500
  health_every_steps: 250
  num_samples: 3
"""


# --- the reference: a plain GPT-2-style model and loop ---------------------------------


class RefBlock(nn.Module):
    def __init__(self, C: int, nh: int) -> None:
        super().__init__()
        self.nh = nh
        self.ln_1, self.ln_2 = nn.LayerNorm(C, bias=False), nn.LayerNorm(C, bias=False)
        self.qkv, self.proj = nn.Linear(C, 3 * C, bias=False), nn.Linear(C, C, bias=False)
        self.fc, self.out = nn.Linear(C, 4 * C, bias=False), nn.Linear(4 * C, C, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(self.ln_1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.nh, C // self.nh).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(y.transpose(1, 2).reshape(B, T, C))
        return x + self.out(F.gelu(self.fc(self.ln_2(x))))


class RefGPT(nn.Module):
    """GPT-2 as in nanoGPT: learned positions, pre-LayerNorm, GELU, tied head."""

    def __init__(self, V: int, n_layer: int = 4, nh: int = 4, C: int = 128) -> None:
        super().__init__()
        self.wte, self.wpe = nn.Embedding(V, C), nn.Embedding(BLOCK, C)
        self.h = nn.ModuleList(RefBlock(C, nh) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(C, bias=False)
        for name, p in self.named_parameters():
            if p.dim() == 2:
                std = 0.02 / math.sqrt(2 * n_layer) if name.endswith(("proj.weight",
                                                                       "out.weight")) else 0.02
                nn.init.normal_(p, 0.0, std)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.wte(idx) + self.wpe(torch.arange(idx.size(1)))
        for block in self.h:
            x = block(x)
        return self.ln_f(x) @ self.wte.weight.t()  # (B, T, V), tied head


class Reference:
    """The reference loop, run in chunks of steps so that it can interleave with llmkit."""

    def __init__(self, train_ids: torch.Tensor, V: int, steps: int, seed: int) -> None:
        torch.manual_seed(seed)
        self.ids, self.steps, self.step, self.seconds = train_ids, steps, 0, 0.0
        self.model = RefGPT(V)
        decay = [p for p in self.model.parameters() if p.dim() == 2 and p is not
                 self.model.wte.weight and p is not self.model.wpe.weight]
        rest = [p for p in self.model.parameters() if all(p is not d for d in decay)]
        self.opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                                      {"params": rest, "weight_decay": 0.0}],
                                     lr=1e-3, betas=(0.9, 0.99))
        self.gen = torch.Generator().manual_seed(seed)

    def lr(self, step: int) -> float:
        if step < 100:
            return 1e-3 * (step + 1) / 100
        progress = min(1.0, (step - 100) / max(1, self.steps - 100))
        return 1e-4 + (1e-3 - 1e-4) * 0.5 * (1 + math.cos(math.pi * progress))

    def run(self, n: int) -> None:
        t0 = time.perf_counter()
        self.model.train()
        for _ in range(n):
            starts = torch.randint(0, len(self.ids) - BLOCK - 1, (BATCH,), generator=self.gen)
            x = torch.stack([self.ids[s:s + BLOCK] for s in starts])
            y = torch.stack([self.ids[s + 1:s + BLOCK + 1] for s in starts])
            loss = F.cross_entropy(self.model(x).flatten(0, 1), y.flatten())
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
            for g in self.opt.param_groups:
                g["lr"] = self.lr(self.step)
            self.opt.step()
            self.step += 1
        self.seconds += time.perf_counter() - t0


@torch.no_grad()
def val_loss(logits_of, ids: torch.Tensor, batch: int = 128) -> float:
    """Mean cross-entropy over the whole text in non-overlapping windows of BLOCK."""
    n = (len(ids) - 1) // BLOCK
    x = ids[: n * BLOCK].view(n, BLOCK)
    y = ids[1 : n * BLOCK + 1].view(n, BLOCK)
    total = 0.0
    for i in range(0, n, batch):
        logits = logits_of(x[i:i + batch]).float()
        total += F.cross_entropy(logits.flatten(0, 1), y[i:i + batch].flatten(),
                                 reduction="sum").item()
    return total / y.numel()


# --- lockstep ------------------------------------------------------------------------


class Lockstep(L.Callback):
    """Times llmkit's training, and every `every` steps evaluates it and advances the reference."""

    def __init__(self, every: int, val_ids: torch.Tensor, ref: Reference | None,
                 ref_val_ids: torch.Tensor) -> None:
        self.every, self.val_ids, self.ref, self.ref_val_ids = every, val_ids, ref, ref_val_ids
        self.seconds = 0.0  # llmkit training time
        self._mark: float | None = None
        self.curve: list[tuple[int, float, float, float | None, float]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._mark is None:
            self._mark = time.perf_counter()

    def on_validation_start(self, trainer, pl_module) -> None:
        self._pause()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if step % self.every and step != trainer.max_steps:
            return
        self._pause()
        model = pl_module.model
        model.eval()
        ours = val_loss(lambda x: model(x, all_logits=True)[0], self.val_ids)
        model.train()
        theirs = None
        if self.ref is not None:
            self.ref.run(step - self.ref.step)
            self.ref.model.eval()
            theirs = val_loss(self.ref.model, self.ref_val_ids)
        self.curve.append((step, ours, self.seconds, theirs,
                           self.ref.seconds if self.ref else 0.0))
        print(f"step {step}: llmkit val {ours:.4f} ({self.seconds:.0f} s)"
              + (f", reference val {theirs:.4f} ({self.ref.seconds:.0f} s)"
                 if self.ref else ""), file=sys.stderr, flush=True)

    def _pause(self) -> None:
        if self._mark is not None:
            self.seconds += time.perf_counter() - self._mark
            self._mark = None


def matmul_ceiling(n: int = 512, repeats: int = 20) -> float:
    """FLOP/s of the best of `repeats` float32 (n x n) @ (n x n) matmuls on this machine now.

    A CPU has no data-sheet peak that means much (turbo, shared cores, AVX width); MFU on
    CPU is reported as a fraction of this measured ceiling instead.
    """
    a, b = torch.randn(n, n), torch.randn(n, n)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def time_to(curve: list[tuple[int, float, float]], target: float) -> str:
    for step, loss, seconds in curve:
        if loss <= target:
            return f"{seconds:.1f} s (step {step})"
    return "not reached"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--eval-every", type=int, default=200)
    parser.add_argument("--no-reference", action="store_true")
    parser.add_argument("-o", "--override", action="append", default=[],
                        help="llmkit config override, as `llmkit train -o`")
    args = parser.parse_args(argv)

    train_text = (DATA / "train.txt").read_text(encoding="utf-8")
    val_text = (DATA / "val.txt").read_text(encoding="utf-8")
    chars = sorted(set(train_text + val_text))
    stoi = {c: i for i, c in enumerate(chars)}
    ref_train = torch.tensor([stoi[c] for c in train_text], dtype=torch.long)
    ref_val = torch.tensor([stoi[c] for c in val_text], dtype=torch.long)
    ref = None if args.no_reference else Reference(ref_train, len(chars), args.steps, 1337)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.steps} "
          f"steps; overrides: {args.override or 'none'}", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "data").mkdir()
        for name in ("train.txt", "val.txt"):
            shutil.copyfile(DATA / name, root / "data" / name)
        (root / "llmkit.yaml").write_text(PROJECT_YAML.format(steps=args.steps))
        cfg, tok = ensure_tokenizer(load_config(root, args.override), log=lambda m: None,
                                    show_progress=False)
        val_ids = torch.tensor(tok.encode(val_text), dtype=torch.long)
        assert len(val_ids) == len(ref_val), "the char tokenizer maps one id per character"
        t, m = cfg.training, cfg.model
        print(f"llmkit: arch {m.arch}, tied head {m.tie_embeddings}, optimizer "
              f"{t.optimizer} betas {t.betas}, lr {t.lr}, weight decay {t.weight_decay}, "
              f"precision {t.precision}, compile {t.compile}", flush=True)
        lockstep = Lockstep(args.eval_every, val_ids, ref, ref_val)
        train(root, args.override, log=lambda m: None, progress=False,
              extra_callbacks=[lockstep])

    tokens = args.steps * BATCH * BLOCK
    final = lockstep.curve[-1]
    ceiling = matmul_ceiling()
    ours_fpt = flops_per_token(gpt_config(cfg, tok))
    ref_fpt = flops_per_token(GPTConfig(vocab_size=len(chars), n_layer=4, n_head=4, n_embd=128,
                                        block_size=BLOCK))  # the reference's shape
    print(f"matmul ceiling: {ceiling / 1e9:.1f} GFLOP/s (float32 512^3, best of 20); "
          f"FLOPs per token: llmkit {ours_fpt / 1e6:.2f} M, reference {ref_fpt / 1e6:.2f} M")
    print("step  llmkit_val  llmkit_s" + ("  reference_val  reference_s" if ref else ""))
    for step, ours, s, theirs, rs in lockstep.curve:
        print(f"{step:5d}  {ours:10.4f}  {s:8.1f}"
              + (f"  {theirs:13.4f}  {rs:11.1f}" if theirs is not None else ""))
    print(f"llmkit val/loss: {final[1]:.4f}")
    print(f"llmkit tokens/s: {tokens / final[2]:,.0f} (MFU "
          f"{tokens / final[2] * ours_fpt / ceiling:.1%} of the matmul ceiling)")
    if ref is not None:
        target = final[3]
        print(f"reference val/loss: {target:.4f}")
        print(f"reference tokens/s: {tokens / final[4]:,.0f} (MFU "
              f"{tokens / final[4] * ref_fpt / ceiling:.1%} of the matmul ceiling)")
        print(f"ratio: {final[4] / final[2]:.3f}")
        ours_curve = [(s, v, t) for s, v, t, _, _ in lockstep.curve]
        ref_curve = [(s, v, t) for s, _, _, v, t in lockstep.curve]
        print(f"time_to_reference_loss llmkit: {time_to(ours_curve, target)}")
        print(f"time_to_reference_loss reference: {time_to(ref_curve, target)}")


if __name__ == "__main__":
    main()
