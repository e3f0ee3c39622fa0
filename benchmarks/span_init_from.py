"""Does `model.init_from` help? A span model started from an LM trained on the same text,
against the same span model started from random weights, for the same steps.

The span task is extractive QA over Shakespeare, generated here from
`tinyshakespeare.txt`: the context is two consecutive speeches ("NAME:" then its lines),
the question quotes a few words of one line, and the answer is the name of the speaker of
that line, as it stands in the context. A quarter of the questions quote a line from
elsewhere in the play: their answer is "no span". Examples that share a context are one
group, so the validation split never holds a paragraph that training saw.

Steps, each through the installed `llmkit` CLI:

1. an LM project on the whole text (BPE, the `tiny` preset), trained `--lm-steps`;
2. a span project on the QA examples, sharing the LM's tokenizer file, trained
   `--span-steps` from scratch, then again with `model.init_from` pointing at the LM;
3. `llmkit eval --json` of each, printed side by side.

    python benchmarks/span_init_from.py --out /tmp/init_from [--lm-steps 600] [--span-steps 600]

Wall-clock times depend on the machine's load; the comparison is at equal steps.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

LLMKIT = Path(sys.executable).with_name("llmkit")
SHAKESPEARE = Path("/work/shared/data/tinyshakespeare.txt")
SPEAKER = re.compile(r"^([A-Z][A-Za-z ]+):$")
SHAPE = ["model.size=tiny", "model.block_size=128", "model.dropout=0.0"]


def speeches(text: str) -> list[tuple[str, list[str]]]:
    """(speaker, lines) of every speech: a "NAME:" line, then its lines up to a blank."""
    out = []
    for block in text.split("\n\n"):
        lines = block.strip("\n").split("\n")
        m = SPEAKER.match(lines[0]) if lines else None
        if m and len(lines) > 1:
            out.append((m[1], lines[1:]))
    return out


def quote(line: str, rng: random.Random) -> str | None:
    words = line.split()
    if len(words) < 5:
        return None
    n = rng.randint(4, min(7, len(words)))
    start = rng.randint(0, len(words) - n)
    return " ".join(words[start:start + n])


def qa_examples(text: str, n: int, seed: int) -> list[dict]:
    """`n` question/context examples (see the module docstring)."""
    rng = random.Random(seed)
    sp = [s for s in speeches(text) if sum(len(line) for line in s[1]) < 220]
    out = []
    while len(out) < n:
        i = rng.randrange(len(sp) - 1)
        pair = [sp[i], sp[i + 1]]
        context = "\n\n".join(f"{name}:\n" + "\n".join(lines) for name, lines in pair)
        if rng.random() < 0.25:  # a quote from elsewhere: no span
            j = rng.randrange(len(sp))
            if j in (i, i + 1):
                continue
            q = quote(rng.choice(sp[j][1]), rng)
            if q is None or q in context:
                continue
            span = None
        else:
            k = rng.randrange(2)
            q = quote(rng.choice(pair[k][1]), rng)
            if q is None:
                continue
            start = 0 if k == 0 else context.index("\n\n") + 2
            span = [start, start + len(pair[k][0])]
        out.append({"question": f'Who says "{q}"?', "context": context, "span": span,
                    "group": i})
    return out


def llmkit(*args: str, cwd: Path) -> str:
    proc = subprocess.run([str(LLMKIT), *args], cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"llmkit {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc.stdout


def overrides(items: list[str]) -> list[str]:
    return [a for item in items for a in ("-o", item)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--lm-steps", type=int, default=600)
    ap.add_argument("--span-steps", type=int, default=600)
    ap.add_argument("--examples", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    text = SHAKESPEARE.read_text(encoding="utf-8")
    args.out.mkdir(parents=True, exist_ok=True)

    lm = args.out / "lm"
    if not lm.exists():
        llmkit("new", "lm", "--task", "lm", "--size", "tiny", cwd=args.out)
        (lm / "data" / "train.txt").write_text(text, encoding="utf-8")
        llmkit("train", *overrides([*SHAPE, f"training.max_steps={args.lm_steps}",
                                    f"training.val_every_steps={args.lm_steps}",
                                    "training.warmup_steps=50"]), cwd=lm)
    lm_eval = json.loads(llmkit("eval", "--json", cwd=lm))

    rows = qa_examples(text, args.examples, args.seed)
    results = {}
    for name, init in (("scratch", None), ("init_from", "../lm")):
        proj = args.out / name
        if proj.exists():
            shutil.rmtree(proj)
        (args.out / "qa.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows),
                                           encoding="utf-8")
        llmkit("new", name, "--task", "span", "--size", "tiny", "--data",
               str(args.out / "qa.jsonl"), cwd=args.out)
        settings = [*SHAPE, "tokenizer.path=../lm/tokenizer/tokenizer.json",
                    "tokenizer.kind=bpe", "tokenizer.vocab_size=2000", "data.val=[]",
                    "data.val_fraction=0.1", "span.max_span_tokens=16",
                    f"training.max_steps={args.span_steps}",
                    f"training.val_every_steps={max(1, args.span_steps // 4)}",
                    "training.warmup_steps=50", "training.lr=1e-3"]
        if init:
            settings.append(f"model.init_from={init}")
        llmkit("train", *overrides(settings), cwd=proj)
        results[name] = json.loads(llmkit("eval", "--json", *overrides(settings), cwd=proj))

    print(f"LM: {args.lm_steps} steps, val/loss {lm_eval['val/loss']:.3f}")
    keys = ("val/span_iou", "val/has_span_iou", "val/exact_match", "val/span_f1",
            "val/nospan_recall", "val/nospan_predicted", "val_examples")
    print(f"{'metric':<22} {'scratch':>9} {'init_from':>9}")
    for key in keys:
        a, b = results["scratch"].get(key), results["init_from"].get(key)
        print(f"{key:<22} {_cell(a)} {_cell(b)}")


def _cell(v: object) -> str:
    return f"{v:9.3f}" if isinstance(v, float) else f"{v!s:>9}"


if __name__ == "__main__":
    main()
