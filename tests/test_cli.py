"""The CLI contract: fast --help, one-line errors, project discovery."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from llmkit import __version__
from llmkit.cli import cli


def test_help_does_not_import_torch_or_lightning() -> None:
    code = (
        "import sys\n"
        "from llmkit.cli import cli\n"
        "try:\n"
        "    cli(['--help'], prog_name='llmkit')\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = sorted(m for m in ('torch', 'lightning', 'tokenizers') if m in sys.modules)\n"
        "print('HEAVY=' + ','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert "Usage:" in out
    assert "HEAVY=\n" in out, out


def test_version() -> None:
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


def test_outside_a_project_is_one_line_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["-C", str(tmp_path), "train"])
    assert result.exit_code == 1
    assert "no llmkit.yaml" in result.output
    assert "llmkit new" in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_config_errors_are_reported_together_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "llmkit.yaml").write_text(
        "project:\n  task: lm\nmodel:\n  n_layr: 2\n  dropout: high\n"
        "training:\n  lr: -1\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["-C", str(tmp_path), "smoke"])
    assert result.exit_code == 1
    line = result.output.strip()
    assert len(line.splitlines()) == 1
    assert "3 problems" in line
    assert "model.n_layr: unknown key (did you mean 'n_layer'?)" in line
    assert "model.dropout: found 'high'" in line
    assert "training.lr: found -1.0; allowed: a number > 0" in line


def test_project_found_from_a_subfolder(tmp_path: Path) -> None:
    (tmp_path / "llmkit.yaml").write_text("training:\n  lr: 0\n", encoding="utf-8")
    sub = tmp_path / "data" / "deep"
    sub.mkdir(parents=True)
    result = CliRunner().invoke(cli, ["-C", str(sub), "smoke"])
    # The file was found upward (its error is about its own content, not a missing file).
    assert result.exit_code == 1
    assert "training.lr: found 0" in result.output


def test_bad_override_names_the_key(tmp_path: Path) -> None:
    (tmp_path / "llmkit.yaml").write_text("project:\n  task: lm\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["-C", str(tmp_path), "smoke", "-o", "training.lr=fast",
                                      "-o", "trainig.lr=1"])
    assert result.exit_code == 1
    assert "training.lr: found 'fast'; allowed: a number" in result.output
    assert "trainig: unknown section (did you mean 'training'?)" in result.output
