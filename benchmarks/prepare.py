"""Data preparation benchmark: throughput and peak memory of `prepare_data` on a big corpus.

Builds a plain-text corpus of `--size-mb` MB (default 100) in a temporary project by
drawing random lines of `--source` into paragraphs and perturbing them (words swapped for
random others) so that the tokenizer does not see pure repetition; trains a byte-level BPE
tokenizer on the first `--tokenizer-mb` MB; then prepares the whole corpus in a fresh
child process and reports MB/s and the child's peak resident memory next to the corpus
size. Memory must not grow with the corpus: the ratio peak / corpus should fall as the
corpus grows.

Then the same for a corpus that is a single line of `--huge-line-mb` MB (default 50; 0
skips it): the tokenizer is trained on it and it is prepared, each in a fresh child
process. Every peak is checked against `MEMORY_BOUND_MB`, the bound docs/internals.md
states; the script exits with status 1 when one is over it.

    python benchmarks/prepare.py                         # ~100 MB + a 50 MB line, minutes
    python benchmarks/prepare.py --size-mb 20 --source my.txt --huge-line-mb 0

The source defaults to the Shakespeare example's data, then the lm template's sample data;
without either, random words are generated.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import string
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SOURCES = (
    REPO / "examples" / "shakespeare" / "data" / "train.txt",
    *sorted((REPO / "llmkit" / "templates" / "lm" / "data").glob("*.txt")),
)
N_FILES = 4  # the corpus is spread over a few files, as real data usually is
# Peak resident memory of tokenizer training and of preparation (report included), whatever
# the corpus size or line length; stated in docs/internals.md.
MEMORY_BOUND_MB = 1024


def source_lines(source: Path | None) -> list[str]:
    """Non-blank lines of the source text, or random 'words' when there is none."""
    for path in ([source] if source else list(DEFAULT_SOURCES)):
        if path.is_file():
            lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
            if lines:
                print(f"source: {path} ({len(lines):,} lines)")
                return lines
    if source:
        sys.exit(f"--source {source} is missing or empty")
    print("source: random words (no sample text found)")
    rng = random.Random(0)
    words = ["".join(rng.choices(string.ascii_lowercase, k=rng.randint(1, 9)))
             for _ in range(5000)]
    return [" ".join(rng.choices(words, k=rng.randint(3, 12))) for _ in range(20_000)]


def write_corpus(lines: list[str], folder: Path, size_mb: float, seed: int = 0) -> int:
    """Write about `size_mb` MB of perturbed paragraphs over N_FILES files; return bytes."""
    rng = random.Random(seed)
    words = sorted({w for ln in lines[:20_000] for w in ln.split()})
    target = int(size_mb * 1e6)
    per_file = target // N_FILES + 1
    written = 0
    for i in range(N_FILES):
        with open(folder / f"train{i}.txt", "w", encoding="utf-8") as fh:
            done = 0
            while done < per_file:
                para = []
                for line in rng.choices(lines, k=rng.randint(1, 6)):
                    if rng.random() < 0.5:
                        parts = line.split(" ")
                        parts[rng.randrange(len(parts))] = rng.choice(words)
                        line = " ".join(parts)
                    para.append(line)
                text = "\n".join(para) + "\n\n"
                fh.write(text)
                done += len(text.encode("utf-8"))
        written += done
    return written


def first_mb(folder: Path, mb: float) -> Path:
    """The first `mb` MB of the corpus (whole lines), as the tokenizer's training file."""
    out = folder.parent / "tokenizer_slice.txt"
    with open(folder / "train0.txt", encoding="utf-8") as src, open(out, "w",
                                                                  encoding="utf-8") as dst:
        size = 0
        for line in src:
            dst.write(line)
            size += len(line)
            if size >= mb * 1e6:
                break
    return out


def run_child(stage: str, root: Path) -> None:
    """Child process: one stage on `root`; time and memory go to `root/bench-<stage>.json`."""
    from llmkit.config import load_config
    from llmkit.data import prepare_data
    from llmkit.tokenizer import Tokenizer, train_tokenizer

    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    out: dict = {}
    if stage == "tokenizer":
        tok = train_tokenizer(sorted((root / "data").glob("*.txt")), root / "tokenizer.json",
                              kind="bpe", vocab_size=1024, show_progress=False)
        out["vocab_size"] = tok.vocab_size
    else:
        cfg = load_config(root)
        tok = Tokenizer.load(cfg.path(cfg.tokenizer.path))
        out["report"] = prepare_data(cfg, tok, force=True, progress=True).meta["report"]
    out.update(seconds=time.perf_counter() - t0, rss_before_kb=base,
               rss_peak_kb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    (root / f"bench-{stage}.json").write_text(json.dumps(out))


def child(stage: str, root: Path) -> dict:
    """Run one stage in a fresh process, so that its peak memory is that stage's alone."""
    subprocess.run([sys.executable, __file__, "--child", stage, str(root)], check=True)
    return json.loads((root / f"bench-{stage}.json").read_text())


def write_config(root: Path, vocab_size: int, val: list[str] | None = None) -> None:
    import yaml

    data = {"train": ["data/*.txt"], "val": val} if val else {"train": ["data/*.txt"],
                                                              "val_fraction": 0.05}
    (root / "llmkit.yaml").write_text(yaml.safe_dump({
        "project": {"name": "bench", "task": "lm"},
        "data": data,
        "tokenizer": {"path": "tokenizer.json", "kind": "bpe", "vocab_size": vocab_size},
    }))


def check_bound(label: str, result: dict) -> bool:
    """Print a stage's peak memory against the bound; whether it is within it."""
    peak_mb = result["rss_peak_kb"] / 1024
    ok = peak_mb <= MEMORY_BOUND_MB
    print(f"{label:<30} peak RSS {peak_mb:,.0f} MB, {result['seconds']:.1f} s: "
          f"{'within' if ok else 'OVER'} the {MEMORY_BOUND_MB:,} MB bound")
    return ok


def huge_line(lines: list[str], size_mb: float) -> bool:
    """Train the tokenizer on, and prepare, a corpus of one line of `size_mb` MB."""
    root = Path(tempfile.mkdtemp(prefix="llmkit-bench-huge-line-"))
    (root / "data").mkdir()
    rng = random.Random(1)
    done = 0
    with open(root / "data" / "one_line.txt", "w", encoding="utf-8") as fh:
        while done < size_mb * 1e6:
            chunk = " ".join(rng.choices(lines, k=200)) + " "
            fh.write(chunk)
            done += len(chunk.encode("utf-8"))
    print(f"\nhuge line: one line of {done / 1e6:,.1f} MB (no line end)")
    # One document cannot be split: a few paragraphs of validation text come separately.
    (root / "val.txt").write_text("\n\n".join(rng.choices(lines, k=50)) + "\n")
    write_config(root, 1024, val=["val.txt"])
    ok = check_bound("tokenizer training (bpe)", child("tokenizer", root))
    result = child("prepare", root)
    report = result["report"]
    print(f"{'':<30} {report['tokens_train'] + report['tokens_val']:,} tokens in "
          f"{report['documents_train'] + report['documents_val']} document(s)")
    ok = check_bound("prepare (report included)", result) and ok
    import shutil

    shutil.rmtree(root)
    return ok


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", type=Path, default=None, help="text to build the corpus from")
    ap.add_argument("--size-mb", type=float, default=100.0, help="corpus size in MB")
    ap.add_argument("--tokenizer-mb", type=float, default=5.0, help="BPE training slice")
    ap.add_argument("--vocab-size", type=int, default=4096)
    ap.add_argument("--huge-line-mb", type=float, default=50.0,
                    help="size of the single-line corpus (0: skip it)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary project")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)  # child mode: STAGE ROOT
    args = ap.parse_args()
    if args.child:
        run_child(args.child[0], Path(args.child[1]))
        return

    from llmkit.tokenizer import train_tokenizer

    root = Path(tempfile.mkdtemp(prefix="llmkit-bench-prepare-"))
    data = root / "data"
    data.mkdir()
    t0 = time.perf_counter()
    lines = source_lines(args.source)
    corpus = write_corpus(lines, data, args.size_mb)
    print(f"corpus: {corpus / 1e6:,.1f} MB in {N_FILES} files ({time.perf_counter() - t0:.1f} s)")
    t0 = time.perf_counter()
    tok = train_tokenizer([first_mb(data, args.tokenizer_mb)], root / "tokenizer.json",
                          kind="bpe", vocab_size=args.vocab_size, show_progress=False)
    print(f"tokenizer: bpe, {tok.vocab_size} tokens, trained on {args.tokenizer_mb:g} MB "
          f"({time.perf_counter() - t0:.1f} s)")
    write_config(root, args.vocab_size)

    result = child("prepare", root)
    mb = corpus / 1e6
    peak_mb = result["rss_peak_kb"] / 1024
    base_mb = result["rss_before_kb"] / 1024
    report = result["report"]
    tokens = report["tokens_train"] + report["tokens_val"]
    print()
    print(f"corpus            {mb:,.1f} MB, {tokens:,} tokens")
    print(f"prepare           {result['seconds']:.1f} s, {mb / result['seconds']:.2f} MB/s")
    print(f"peak RSS          {peak_mb:,.0f} MB (after imports {base_mb:,.0f} MB; prepare "
          f"added {peak_mb - base_mb:,.0f} MB)")
    print(f"peak / corpus     {peak_mb / mb:.2f} (added / corpus {(peak_mb - base_mb) / mb:.2f})")
    ok = check_bound(f"prepare, {mb:,.0f} MB corpus", result)
    if args.keep:
        print(f"kept {root}")
    else:
        import shutil

        shutil.rmtree(root)
    if args.huge_line_mb > 0:
        ok = huge_line(lines, args.huge_line_mb) and ok
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
