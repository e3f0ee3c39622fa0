"""Input mistakes end in one line (exit status 1), never a traceback: absurd model sizes,
`predict --output` into a missing folder, FSDP without a GPU, and Lightning's own
configuration errors (named by the llmkit key to change)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from click.testing import CliRunner, Result

from llmkit.cli import cli
from llmkit.config import Config
from llmkit.trainer.run import train


def _quiet(_: str) -> None:
    pass


def _one_line(result: Result) -> str:
    """The error line of a CLI run that must have failed cleanly."""
    assert result.exit_code == 1, (result.output, result.exception)
    assert not isinstance(result.exception, Exception) or isinstance(result.exception,
                                                                     SystemExit)
    lines = [x for x in result.output.splitlines() if "Error: " in x]
    assert len(lines) == 1, result.output
    return lines[0].split("Error: ", 1)[1]


def _run(cfg: Config, *args: str) -> Result:
    return CliRunner().invoke(cli, ["-C", str(cfg.root), *args])


def test_a_model_width_beyond_any_integer_type(tiny_project: Callable[..., Config]) -> None:
    cfg = tiny_project()
    line = _one_line(_run(cfg, "smoke", "-o", "model.n_embd=10000000000000000000"))
    assert "model.n_embd: found 10000000000000000000; allowed: an integer <= " in line


def test_a_model_larger_than_the_machine(tiny_project: Callable[..., Config]) -> None:
    # In range for torch, but its weights alone would need terabytes: refused before any
    # allocation, naming the keys.
    cfg = tiny_project()
    line = _one_line(_run(cfg, "smoke", "-o", "model.n_embd=1048576", "-o", "model.n_head=1"))
    assert "GiB of float32 weights alone, more than this machine's" in line
    assert "lower model.n_embd or model.n_layer" in line


def test_predict_output_into_a_missing_folder(tiny_project: Callable[..., Config]) -> None:
    cfg = tiny_project("span")
    train(cfg.root, stop_at=2, log=_quiet, progress=False)
    missing = cfg.root / "no" / "such" / "folder" / "out.jsonl"
    line = _one_line(_run(cfg, "predict", "--text", "the gold crown", "--output", str(missing)))
    assert f"--output {missing}: the folder {missing.parent} does not exist" in line
    assert not missing.parent.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_fsdp_without_a_gpu_says_ddp_works_on_cpu(tiny_project: Callable[..., Config]) -> None:
    cfg = tiny_project()
    line = _one_line(_run(cfg, "train", "-o", "training.strategy=fsdp"))
    assert "training.strategy: found 'fsdp'" in line and "no GPU" in line
    assert "-o training.strategy=ddp" in line


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_lightning_configuration_errors_name_the_llmkit_key(
        tiny_project: Callable[..., Config], monkeypatch: pytest.MonkeyPatch) -> None:
    # llmkit's own FSDP check believes in a GPU; Lightning, which counts devices, finds
    # none and refuses with its own ValueError: it reaches the user as one line naming
    # training.strategy.
    cfg = tiny_project()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    line = _one_line(_run(cfg, "train", "-o", "training.strategy=fsdp",
                          "-o", "training.precision=32-true"))
    assert line.startswith(f"{cfg.file}: 1 problem: Lightning refused the training settings ")
    assert "requires a GPU accelerator" in line  # Lightning's reason, kept
    assert "change training.strategy" in line
