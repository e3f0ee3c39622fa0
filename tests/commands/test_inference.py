"""generate, predict and eval without Lightning: no Lightning or trainer module is imported,
predictions in batches equal predictions one at a time, generation with the KV cache equals
generation without it, and --device is honoured (CUDA tests skip without a GPU)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from llmkit.commands.generate import generate_text
from llmkit.commands.predict import predict_spans
from llmkit.errors import LlmkitError
from llmkit.inference import inference_dtype, resolve_device

_MODULES_AFTER = """
import json, sys
from llmkit.cli import cli
try:
    cli.main(sys.argv[1:], prog_name="llmkit", standalone_mode=False)
except SystemExit:
    pass
heavy = sorted(m for m in sys.modules
               if m.split(".")[0] in ("lightning", "pytorch_lightning", "lightning_fabric")
               or m == "llmkit.trainer" or m.startswith("llmkit.trainer."))
print("MODULES=" + json.dumps(heavy))
"""


def modules_after(*args: str, cwd: Path) -> list[str]:
    """The Lightning and trainer modules loaded by running `llmkit ARGS` in a fresh Python."""
    proc = subprocess.run([sys.executable, "-c", _MODULES_AFTER, *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300,
                          env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("MODULES=")]
    assert proc.returncode == 0 and lines, proc.stdout + proc.stderr
    return json.loads(lines[-1].removeprefix("MODULES="))


@pytest.fixture(scope="module")
def lm(trained_project):
    return trained_project("lm", tokenizer="bpe")


@pytest.fixture(scope="module")
def span(trained_project):
    return trained_project("span", task="span", tokenizer="char", block_size=64)


def test_generate_imports_neither_lightning_nor_the_trainer(lm):
    assert modules_after("generate", "--help", cwd=lm.root) == []
    # a real generation, so the check covers loading the checkpoint and running the model
    assert modules_after("generate", "--prompt", "the king", "--max-new-tokens", "4",
                         "--seed", "1", cwd=lm.root) == []
    assert modules_after("eval", "--json", cwd=lm.root) == []


def test_predict_imports_neither_lightning_nor_the_trainer(span):
    assert modules_after("predict", "--text", "the gold crown", cwd=span.root) == []


def test_the_check_sees_lightning_when_it_is_imported(lm):
    # the same check on a command that trains does see Lightning: the test can fail
    assert "lightning" in modules_after("smoke", cwd=lm.root)


def test_generate_with_the_cache_equals_generate_without(lm):
    for seed, temperature in ((None, 0.0), (3, 1.0)):
        cached = generate_text(lm, "the", max_new_tokens=40, temperature=temperature,
                               seed=seed, device="cpu", log=lambda _: None)
        plain = generate_text(lm, "the", max_new_tokens=40, temperature=temperature,
                              seed=seed, device="cpu", use_cache=False, log=lambda _: None)
        assert cached == plain and len(cached) > len("the")


def test_predict_in_batches_equals_one_at_a_time(span, tmp_path):
    from conftest import span_lines

    lines = [json.loads(x) for x in span_lines(23, seed=5).splitlines()]
    lines.append({"text": "gold"})  # short and long texts in one batch: padding matters
    lines.append({"text": "the king and queen went to a river where gold light fell"})
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps({"text": x["text"]}) + "\n" for x in lines))
    quiet = lambda _: None  # noqa: E731
    # keep_text: the output repeats the text only when asked (issue 11)
    one = predict_spans(span, input_path=path, batch_size=1, device="cpu", keep_text=True,
                        echo=quiet)
    many = predict_spans(span, input_path=path, batch_size=8, device="cpu", keep_text=True,
                         echo=quiet)
    assert [r["text"] for r in many] == [x["text"] for x in lines]  # input order kept
    assert [r["span"] for r in many] == [r["span"] for r in one]
    for a, b in zip(one, many, strict=True):
        assert (a["score"] is None) == (b["score"] is None)
        if a["score"] is not None:
            assert b["score"] == pytest.approx(a["score"], abs=1e-4)
    assert any(r["span"] for r in one)  # the tiny model does predict some spans


def test_device_choice():
    assert resolve_device("cpu") == torch.device("cpu")
    assert inference_dtype("bf16-mixed", torch.device("cpu")) == torch.float32
    if torch.cuda.is_available():
        assert resolve_device("auto").type == "cuda"
    else:
        assert resolve_device("auto") == torch.device("cpu")
        with pytest.raises(LlmkitError, match="--device cuda: no CUDA GPU"):
            resolve_device("cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_generate_on_the_gpu_equals_itself_and_runs_in_bf16(lm):
    text = generate_text(lm, "the", max_new_tokens=20, temperature=0, device="cuda",
                         log=lambda _: None)
    again = generate_text(lm, "the", max_new_tokens=20, temperature=0, device="cuda",
                          use_cache=False, log=lambda _: None)
    assert text == again
    assert inference_dtype("bf16-mixed", torch.device("cuda")) == torch.bfloat16
