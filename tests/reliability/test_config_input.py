"""llmkit.yaml under bad input: nothing is silently changed, and every problem is one line.

Duplicate keys and sections, the vocabulary write-back on quoted and flow-style forms,
alias bombs, bytes that are not UTF-8, an empty file, unusable project names, and output
paths that point outside the project.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from llmkit.cli import cli
from llmkit.config import CONFIG_NAME, load_config, write_back
from llmkit.errors import ConfigError

SMALL_MODEL = "  n_layer: 1\n  n_head: 1\n  n_embd: 32\n"


def _write(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / CONFIG_NAME
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def _problems(path: Path, overrides: list[str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path, overrides or [])
    message = str(info.value)
    assert "\n" not in message and len(message) < 1000, message
    return info.value.problems


# ------------------------------------------------------------------- duplicate keys


def test_a_second_section_is_refused_naming_both_lines(tmp_path: Path) -> None:
    path = _write(tmp_path, "training:\n  max_steps: 40\n  batch_size: 4\n"
                            "model:\n  n_layer: 2\n"
                            "training:\n  max_steps: 2000\n  batch_size: 16\n")
    [problem] = _problems(path)
    assert problem.startswith("training: given twice, at line 1 and line 6"), problem


def test_a_repeated_key_is_refused_naming_both_lines(tmp_path: Path) -> None:
    path = _write(tmp_path, "model:\n  n_layer: 2\n  n_embd: 32\n  n_layer: 8\n"
                            "training:\n  lr: 0.001\n  lr: 0.1\n")
    problems = _problems(path)
    assert sorted(p.split(";")[0] for p in problems) == [
        "model.n_layer: given twice, at line 2 and line 4",
        "training.lr: given twice, at line 6 and line 7",
    ]


def test_duplicate_keys_are_refused_on_the_command_line_too(tmp_path: Path) -> None:
    _write(tmp_path, "training:\n  max_steps: 40\ntraining:\n  max_steps: 2000\n")
    result = CliRunner().invoke(cli, ["-C", str(tmp_path), "size"])
    assert result.exit_code == 1
    assert "given twice, at line 1 and line 3" in result.output
    assert "Traceback" not in result.output and len(result.output.splitlines()) == 1


# ----------------------------------------------------------------------- write-back


def test_write_back_edits_a_quoted_section_header_in_place(tmp_path: Path) -> None:
    path = _write(tmp_path, f'"model":\n{SMALL_MODEL}  vocab_size: null\n'
                            "training:\n  max_steps: 3\n")
    write_back(path, {"model.vocab_size": 77})
    text = path.read_text()
    assert text == f'"model":\n{SMALL_MODEL}  vocab_size: 77\ntraining:\n  max_steps: 3\n'
    cfg = load_config(path)  # the user's model, not the preset
    assert (cfg.model.n_layer, cfg.model.n_embd, cfg.model.vocab_size) == (1, 32, 77)


def test_write_back_adds_a_key_under_a_quoted_section_header(tmp_path: Path) -> None:
    path = _write(tmp_path, f"'model':\n{SMALL_MODEL}training:\n  max_steps: 3\n")
    write_back(path, {"model.vocab_size": 77})
    assert path.read_text() == (f"'model':\n{SMALL_MODEL}  vocab_size: 77\n"
                                "training:\n  max_steps: 3\n")
    cfg = load_config(path)
    assert (cfg.model.n_layer, cfg.model.n_embd, cfg.model.vocab_size) == (1, 32, 77)


def test_write_back_edits_a_quoted_key_in_place(tmp_path: Path) -> None:
    path = _write(tmp_path, f'model:\n{SMALL_MODEL}  "vocab_size": 12  # synced\n')
    changed = write_back(path, {"model.vocab_size": 77})
    assert changed == {"model.vocab_size": (12, 77)}
    assert path.read_text() == f'model:\n{SMALL_MODEL}  "vocab_size": 77  # synced\n'
    assert load_config(path).model.vocab_size == 77  # and no duplicate key


def test_write_back_edits_a_flow_style_section(tmp_path: Path) -> None:
    path = _write(tmp_path, "model: {n_layer: 1, n_head: 1, n_embd: 32}  # mine\n"
                            "project: {name: 'a, b'}\n")
    write_back(path, {"model.vocab_size": 77, "project.name": "c, d"})
    assert path.read_text() == ("model: {n_layer: 1, n_head: 1, n_embd: 32, vocab_size: 77}"
                                "  # mine\nproject: {name: \"c, d\"}\n")
    cfg = load_config(path)
    assert (cfg.model.n_layer, cfg.model.vocab_size, cfg.project.name) == (1, 77, "c, d")


def test_write_back_edits_a_value_inside_a_flow_style_section(tmp_path: Path) -> None:
    path = _write(tmp_path, "model: {n_layer: 1, vocab_size: 12, n_embd: 32, n_head: 1}\n")
    write_back(path, {"model.vocab_size": 77})
    assert path.read_text() == "model: {n_layer: 1, vocab_size: 77, n_embd: 32, n_head: 1}\n"


def test_write_back_refuses_a_section_shared_through_an_alias(tmp_path: Path) -> None:
    # Editing the anchored mapping would change the other section too.
    original = "model: &shape {n_layer: 1}\nspan: *shape\n"
    path = _write(tmp_path, original)
    with pytest.raises(ConfigError) as info:
        write_back(path, {"model.vocab_size": 77})
    assert "alias" in str(info.value) and "by hand" in str(info.value)
    assert "\n" not in str(info.value)
    assert path.read_text() == original


def test_write_back_refuses_a_flow_style_top_level(tmp_path: Path) -> None:
    original = "{model: {n_layer: 1}}\n"
    path = _write(tmp_path, original)
    with pytest.raises(ConfigError, match="block mapping"):
        write_back(path, {"training.lr": 0.1})
    assert path.read_text() == original


def test_write_back_reads_the_file_again_after_writing(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # Something else rewrites the file between the write and the read-back (another
    # editor, a sync tool): the value did not land, so the user's file is put back and
    # the write-back fails instead of reporting success.
    import llmkit.yamlio as yamlio

    original = f"model:\n{SMALL_MODEL}  vocab_size: 12\n"
    path = _write(tmp_path, original)
    real = yamlio.atomic_write_text
    calls: list[str] = []

    def write_elsewhere(target: Path, text: str) -> None:
        calls.append(text)
        real(target, text.replace("vocab_size: 77", "vocab_size: 12\n  vocab_size: 77")
             if len(calls) == 1 else text)

    monkeypatch.setattr(yamlio, "atomic_write_text", write_elsewhere)
    with pytest.raises(ConfigError, match="would not read back|unreadable"):
        write_back(path, {"model.vocab_size": 77})
    assert path.read_text() == original
    assert sorted(p.name for p in tmp_path.iterdir()) == [CONFIG_NAME]


def test_vocab_sync_on_a_flow_style_model_keeps_the_users_model(tiny_project) -> None:
    # The full story of the issue: train's vocabulary sync on a config whose model
    # section is written in flow style.
    cfg = tiny_project()
    text = cfg.file.read_text()
    start = text.index("model:")
    end = text.index("training:")
    cfg.file.write_text(text[:start] + "model: {size: custom, n_layer: 1, n_head: 1, "
                        "n_embd: 32, block_size: 32, dropout: 0.0}\n" + text[end:])
    result = CliRunner().invoke(cli, ["-C", str(cfg.root), "tokenizer"])
    assert result.exit_code == 0, result.output
    cfg = load_config(cfg.root)
    assert (cfg.model.n_layer, cfg.model.n_embd) == (1, 32)
    assert cfg.model.vocab_size is not None and cfg.model.vocab_size > 4


# ----------------------------------------------------------------- hostile or damaged


ALIAS_BOMB = textwrap.dedent("""\
    project:
      name: bomb
    x: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
    y: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
    z: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
    w: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
    v: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
    u: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
    t: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
    s: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
    r: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]
    data:
      train: *i
    model:
      size: *i
    training:
      betas: *i
""")


def test_an_alias_bomb_is_reported_in_a_short_line_under_a_memory_limit(tmp_path: Path) -> None:
    _write(tmp_path, ALIAS_BOMB)
    code = ("import sys\nfrom llmkit.config import load_config\nfrom llmkit.errors import "
            "ConfigError\ntry:\n    load_config(sys.argv[1])\nexcept ConfigError as e:\n"
            "    print(len(str(e)), str(e))\n")

    def limit_memory() -> None:  # 1 GiB of address space: a full repr needs gigabytes
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                          text=True, timeout=120, preexec_fn=limit_memory)
    assert proc.returncode == 0, proc.stderr[-2000:]
    length, message = proc.stdout.split(" ", 1)
    assert int(length) < 2000, message[:300]
    for key in ("x", "y", "data.train", "model.size", "training.betas"):
        assert f"{key}: " in message


def test_a_byte_that_is_not_utf8_names_line_and_column(tmp_path: Path) -> None:
    path = _write(tmp_path, b"project:\n  name: caf\xe9\n")
    [problem] = _problems(path)
    assert problem.startswith("line 2, column 12: byte 0xe9 is not UTF-8"), problem
    result = CliRunner().invoke(cli, ["-C", str(tmp_path), "size"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "byte 0xe9 is not UTF-8" in result.output


def test_a_byte_order_mark_is_not_part_of_the_first_key(tmp_path: Path) -> None:
    path = _write(tmp_path, "\ufeffmodel:\n  vocab_size: null\n")
    assert load_config(path).model.vocab_size is None
    write_back(path, {"model.vocab_size": 40})
    assert path.read_bytes() == "\ufeffmodel:\n  vocab_size: 40\n".encode()


@pytest.mark.parametrize("text", ["", "\n\n", "# all commented out\n# model:\n"])
def test_an_empty_file_is_refused_not_run_on_defaults(tmp_path: Path, text: str) -> None:
    [problem] = _problems(_write(tmp_path, text))
    assert problem.startswith("the file is empty"), problem


def test_a_project_name_too_long_for_a_folder_is_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["-C", str(tmp_path), "new", "p" * 300])
    assert result.exit_code == 1, result.output
    assert "300 characters long (at most 100)" in result.output
    assert "Traceback" not in result.output and len(result.output.splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["p" * 300, "../../elsewhere", "a/b"])
def test_project_name_in_the_config_must_be_one_folder_name(tmp_path: Path, name: str) -> None:
    # project.name names the run folder <logging.dir>/<project.name>
    [problem] = _problems(_write(tmp_path, f"project:\n  name: '{name}'\n"))
    assert problem.startswith("project.name: found "), problem


# ------------------------------------------------------------------ where llmkit writes


@pytest.mark.parametrize("key,value", [("data", "cache_dir"), ("tokenizer", "path"),
                                       ("logging", "dir")])
def test_a_config_cannot_send_output_outside_the_project(tmp_path: Path, key: str,
                                                         value: str) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    outside = tmp_path / "victim"
    for target in (str(outside), "../victim"):
        path = _write(root, f"{key}:\n  {value}: {target}\n")
        [problem] = _problems(path)
        assert problem.startswith(f"{key}.{value}: found "), problem
        assert f"-o {key}.{value}=PATH" in problem
    # Said on the command line, it is the user's own choice.
    cfg = load_config(root, [f"{key}.{value}={outside}"])
    assert str(getattr(getattr(cfg, key), value)) == str(outside)
    assert not outside.exists()
