"""Damaged checkpoints are refused with the file's name, never loaded silently.

A checkpoint is a zip archive whose members carry a CRC-32; torch does not check it, so
overwritten bytes used to load as different weights (`eval` reported another loss without
a word). NaN bytes written with a valid CRC are caught by the finite check. A run resumed
from such a file must be refused before training, not end in a NaN that blames the
learning rate and calls the damaged file "the last good checkpoint".
"""

from __future__ import annotations

import struct
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from llmkit.checkpoint import load_checkpoint
from llmkit.cli import cli
from llmkit.config import Config
from llmkit.errors import CheckpointError
from llmkit.trainer.run import train

WTE = "model.transformer.wte.weight"


def _quiet(_: str) -> None:
    pass


@pytest.fixture
def trained(tiny_project: Callable[..., Config]) -> tuple[Config, Path]:
    """A tiny LM project trained for 2 steps, and its last.ckpt."""
    cfg = tiny_project(config={"training": {"max_steps": 4, "checkpoint_every_steps": 1}})
    run = train(cfg.root, stop_at=2, log=_quiet, progress=False)
    return cfg, run.last_checkpoint


def _member_offset(path: Path, content: bytes) -> tuple[str, int]:
    """The archive member holding exactly `content`, and where its bytes start in the file."""
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if archive.read(info) == content:
                with path.open("rb") as f:
                    f.seek(info.header_offset + 26)
                    name_len, extra_len = struct.unpack("<HH", f.read(4))
                return info.filename, info.header_offset + 30 + name_len + extra_len
    raise AssertionError("no member holds the tensor")


def _overwrite_embedding(ckpt: Path, n_floats: int = 2000) -> str:
    """Overwrite up to n_floats floats of the token embedding in place (CRC left as is)."""
    wte = torch.load(ckpt, weights_only=True)["state_dict"][WTE]
    member, start = _member_offset(ckpt, wte.numpy().tobytes())
    n = min(n_floats, wte.numel())
    with ckpt.open("r+b") as f:
        f.seek(start)
        f.write(struct.pack(f"<{n}f", *([0.25] * n)))
    return member


def _cli(cfg: Config, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["-C", str(cfg.root), *args])
    return result.exit_code, result.output


def test_overwritten_weights_fail_the_crc_check_in_eval(trained) -> None:
    cfg, ckpt = trained
    code, before = _cli(cfg, "eval", "--checkpoint", str(ckpt))
    assert code == 0, before
    member = _overwrite_embedding(ckpt)

    code, output = _cli(cfg, "eval", "--checkpoint", str(ckpt))
    assert code == 1, output
    assert f"checkpoint {ckpt} is damaged: its part {member!r} fails its CRC check" in output
    assert "Traceback" not in output and len(output.strip().splitlines()) == 1


def test_an_unchanged_file_is_verified_once_a_changed_one_again(
        trained, monkeypatch: pytest.MonkeyPatch) -> None:
    from llmkit import checkpoint

    _, ckpt = trained
    checked: list[Path] = []
    real = checkpoint._check_archive
    monkeypatch.setattr(checkpoint, "_check_archive", lambda p: (checked.append(p), real(p)))
    monkeypatch.setattr(checkpoint, "_VERIFIED", set())
    load_checkpoint(ckpt)
    load_checkpoint(ckpt)  # a resume reads it twice: for the metadata, then via Lightning
    assert checked == [ckpt]
    _overwrite_embedding(ckpt)
    with pytest.raises(CheckpointError, match="fails its CRC check"):
        load_checkpoint(ckpt)
    assert checked == [ckpt, ckpt]


def test_overwritten_weights_are_refused_on_resume(trained) -> None:
    cfg, ckpt = trained
    _overwrite_embedding(ckpt)
    with pytest.raises(CheckpointError, match=rf"{ckpt} is damaged: .* fails its CRC check"):
        train(cfg.root, resume=True, log=_quiet, progress=False)


def test_a_truncated_checkpoint_names_the_file(trained) -> None:
    cfg, ckpt = trained
    data = ckpt.read_bytes()
    ckpt.write_bytes(data[: len(data) // 2])
    code, output = _cli(cfg, "eval", "--checkpoint", str(ckpt))
    assert code == 1 and f"checkpoint {ckpt} is damaged" in output, output
    assert "Traceback" not in output


def _poison(ckpt: Path, where: Callable[[dict], torch.Tensor]) -> None:
    """Put a NaN into one tensor and save the file again (a valid archive: only the finite
    check can see it)."""
    contents = torch.load(ckpt, weights_only=True)
    where(contents).view(-1)[0] = float("nan")
    torch.save(contents, ckpt)


def _first_exp_avg(contents: dict) -> torch.Tensor:
    state = contents["optimizer_states"][0]["state"]
    return state[sorted(state)[0]]["exp_avg"]


def test_nan_in_the_optimizer_state_is_refused_before_training(trained) -> None:
    cfg, ckpt = trained
    _poison(ckpt, _first_exp_avg)
    with pytest.raises(CheckpointError) as info:
        train(cfg.root, resume=True, log=_quiet, progress=False)
    message = str(info.value)
    assert message.startswith(f"checkpoint {ckpt} is damaged: optimizer_states/0/state/")
    assert "exp_avg holds NaN or Inf values" in message
    assert "last good checkpoint" not in message and "training.lr" not in message


def test_nan_in_the_weights_is_refused_by_eval(trained) -> None:
    cfg, ckpt = trained
    _poison(ckpt, lambda contents: contents["state_dict"][WTE])
    code, output = _cli(cfg, "eval", "--checkpoint", str(ckpt))
    assert code == 1, output
    assert f"checkpoint {ckpt} is damaged: state_dict/{WTE} holds NaN or Inf" in output


def test_a_sound_checkpoint_still_loads(trained) -> None:
    _, ckpt = trained
    ckpt_contents = load_checkpoint(ckpt)
    assert ckpt_contents["global_step"] == 2 and WTE in ckpt_contents["state_dict"]


def test_checkpoint_temp_names_are_unique(trained, monkeypatch: pytest.MonkeyPatch) -> None:
    # Two writers of the same checkpoint must never share a temporary file.
    from llmkit.trainer.checkpoint_io import AtomicCheckpointIO

    seen: list[str] = []
    real_save = torch.save

    def save(obj, f, *args, **kwargs):
        seen.append(Path(f).name)
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    _, ckpt = trained
    io = AtomicCheckpointIO()
    io.save_checkpoint({"x": torch.zeros(1)}, ckpt.with_name("a.ckpt"))
    io.save_checkpoint({"x": torch.zeros(1)}, ckpt.with_name("a.ckpt"))
    assert len(seen) == 2 and seen[0] != seen[1], seen
    assert all(name.startswith(".a.ckpt.") and name.endswith(".tmp") for name in seen)
