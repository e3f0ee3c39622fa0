"""The cost of inference telemetry: `llmkit inspect` against plain `llmkit generate`.

    python benchmarks/inspect_cost.py [--repeats 3] [--new-tokens 200] [--threads 1]

For each shape (the Shakespeare example's, and the `small` preset with a 2000-token
vocabulary), generates the same tokens three ways from the same prompt and seed:

- `generate`: `CausalLM.generate` with the KV cache (what `llmkit generate` runs);
- `inspect`: telemetry with attention (the explicit attention path), including turning
  the steps into report data and deciding the health flags;
- `inspect --no-attention`: the same without attention weights (the fused path).

Prints the median seconds of each and the ratios to `generate` (goal: within 2x with
attention on the Shakespeare shape; close to 1 without). Models are randomly initialised:
speed does not depend on training. The text is checked to be identical in all three.
Measure on a quiet machine; other jobs on the cores change the figures.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path, and this file (named as the
# issue asks) would shadow the standard library's `inspect`, which torch imports.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402

from llmkit.inspect.health import Thresholds, assess  # noqa: E402
from llmkit.inspect.numerics import NonFinite  # noqa: E402
from llmkit.inspect.telemetry import Sampling, inspect_generation, to_report  # noqa: E402
from llmkit.models import CausalLM, GPTConfig  # noqa: E402

SHAPES = {
    "shakespeare (4x128, V=68, block 64)": GPTConfig(vocab_size=68, n_layer=4, n_head=4,
                                                     n_embd=128, block_size=64),
    "small preset (6x384, V=2000, block 256)": GPTConfig(vocab_size=2000, n_layer=6,
                                                         n_head=6, n_embd=384,
                                                         block_size=256),
}
PROMPT = [2, 10, 11, 12, 13, 14, 15, 16, 17]


def median_time(fn, repeats: int) -> tuple[float, list[int]]:
    times, out = [], []
    fn()  # warm-up
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def bench(name: str, cfg: GPTConfig, n: int, repeats: int) -> None:
    """Time the three ways on one shape and print them."""
    torch.manual_seed(0)
    model = CausalLM(cfg).eval()

    def plain() -> list[int]:
        idx = torch.tensor([PROMPT])
        out = model.generate(idx, n, temperature=0.8, generator=torch.Generator().manual_seed(0))
        return out[0, len(PROMPT):].tolist()

    def inspected(attention: bool):
        def go() -> list[int]:
            gen = inspect_generation(model, PROMPT, Sampling(max_new_tokens=n,
                                                             attention=attention),
                                     generator=torch.Generator().manual_seed(0))
            _, steps = to_report(gen, str, NonFinite())
            assess(steps, Thresholds(), n_layer=cfg.n_layer, vocab_size=cfg.vocab_size)
            return gen.tokens
        return go

    t_gen, tokens = median_time(plain, repeats)
    t_att, tok_att = median_time(inspected(True), repeats)
    t_no, tok_no = median_time(inspected(False), repeats)
    print(f"\n{name}")
    print(f"  generate                 {t_gen:7.3f} s  ({n / t_gen:7.1f} tokens/s)")
    print(f"  inspect                  {t_att:7.3f} s  ratio {t_att / t_gen:5.2f}x")
    print(f"  inspect --no-attention   {t_no:7.3f} s  ratio {t_no / t_gen:5.2f}x")
    print(f"  same tokens in all three: {tokens == tok_no and tokens == tok_att}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--new-tokens", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{args.new_tokens} new tokens, temperature 0.8, seed 0, {args.threads} thread(s), "
          f"median of {args.repeats}")
    for name, cfg in SHAPES.items():
        bench(name, cfg, args.new_tokens, args.repeats)


if __name__ == "__main__":
    main()
