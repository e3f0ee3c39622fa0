"""What `LensMonitor` adds to each validation, on CPU.

For a model shape, times (a) one validation pass as the trainer runs it (`val_batches`
batches of `batch_size` windows, forward and loss) and (b) one lens measurement as
`LensMonitor` makes it (`lens_windows` windows in chunks of 4 through
`llmkit.inspect.lens.layer_stats`). Random weights and ids: the cost does not depend on
what the model learned. Prints the median of a few repeats and the ratio (b) / (a).

    .venv/bin/python benchmarks/lens_monitor.py            # the shapes below
"""

from __future__ import annotations

import statistics
import time

import torch

from llmkit.inspect.lens import layer_stats
from llmkit.models import CausalLM, GPTConfig

# name: (GPTConfig kwargs, batch_size, val_batches); val_batches 50 is the default
SHAPES = {
    "shakespeare example (char, V 69)": (
        {"vocab_size": 69, "n_layer": 4, "n_head": 4, "n_embd": 128, "block_size": 64}, 12, 50),
    "tiny preset (sample BPE, V 2000)": (
        {"vocab_size": 2000, "n_layer": 4, "n_head": 4, "n_embd": 128, "block_size": 128},
        16, 50),
}
LENS_WINDOWS, CHUNK, REPEATS = 8, 4, 3


@torch.no_grad()
def validation_pass(model: CausalLM, x: torch.Tensor, y: torch.Tensor, batches: int) -> float:
    start = time.perf_counter()
    for _ in range(batches):
        model(x, y)
    return time.perf_counter() - start


@torch.no_grad()
def lens_measurement(model: CausalLM, x: torch.Tensor, y: torch.Tensor) -> float:
    start = time.perf_counter()
    sums = None
    for i in range(0, x.size(0), CHUNK):
        stats = layer_stats(model, x[i:i + CHUNK], y[i:i + CHUNK])
        sums = stats if sums is None else {k: sums[k] + v for k, v in stats.items()}
    assert sums is not None
    {k: v.tolist() for k, v in sums.items()}  # the read-back the monitor does
    return time.perf_counter() - start


def main() -> None:
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    for name, (shape, batch_size, val_batches) in SHAPES.items():
        model = CausalLM(GPTConfig(**shape)).eval()
        T, V = shape["block_size"], shape["vocab_size"]
        xb, yb = torch.randint(0, V, (batch_size, T)), torch.randint(0, V, (batch_size, T))
        xl, yl = torch.randint(0, V, (LENS_WINDOWS, T)), torch.randint(0, V, (LENS_WINDOWS, T))
        lens_measurement(model, xl, yl)  # warm-up
        val = statistics.median(validation_pass(model, xb, yb, val_batches)
                                for _ in range(REPEATS))
        lens = statistics.median(lens_measurement(model, xl, yl) for _ in range(REPEATS))
        print(f"{name}: validation {val * 1000:.0f} ms ({val_batches} x {batch_size} "
              f"windows), lens {lens * 1000:.0f} ms ({LENS_WINDOWS} windows): "
              f"+{100 * lens / val:.1f}% per validation")


if __name__ == "__main__":
    main()
