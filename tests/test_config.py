"""llmkit/config.py: validation that reports every problem, overrides, presets, write-back."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from llmkit.config import CONFIG_NAME, PRESETS, find_project, load_config, write_back
from llmkit.errors import ConfigError, LlmkitError
from llmkit.scaffold import create_project


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / CONFIG_NAME
    path.write_text(text, encoding="utf-8")
    return path


def _problems(path: Path, overrides: list[str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path, overrides or [])
    return info.value.problems


@pytest.fixture
def scaffolded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The llmkit.yaml that `llmkit new` writes: the file write_back must not disturb."""
    monkeypatch.chdir(tmp_path)
    return create_project("proj", tmp_path, task="span").root / CONFIG_NAME


# ----------------------------------------------------------------------- validation


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = _write(tmp_path, (
        "modle:\n  n_layer: 2\n"
        "model:\n  n_layer: four\n  dropout: 1.5\n"
        "training:\n  lrr: 0.001\n"
        "tokenizer:\n  kind: wordpeice\n"
    ))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    problems = info.value.problems

    assert len(problems) == 5, problems
    assert any(p.startswith("modle: unknown section (did you mean 'model'?)") for p in problems)
    assert "training.lrr: unknown key (did you mean 'lr'?)" in problems
    assert any(p.startswith("model.n_layer: found 'four'; allowed: an integer") for p in problems)
    assert "model.dropout: found 1.5; allowed: a number in [0, 1)" in problems
    assert any(p.startswith("tokenizer.kind: found 'wordpeice'; allowed: 'bpe', 'char'")
               for p in problems)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{path}: 5 problems: ")
    assert isinstance(info.value, LlmkitError)  # the CLI prints it in one line


def test_cross_field_and_range_checks(tmp_path: Path) -> None:
    path = _write(tmp_path, (
        "model:\n  n_head: 3\n  n_embd: 128\n  vocab_size: 2\n"
        "training:\n  max_steps: 0\n  lr: -1\n  precision: bf16mixed\n"
        "data:\n  val_fraction: 1.0\n"
    ))
    problems = _problems(path)
    assert len(problems) == 6, problems
    assert any("model.n_embd: found 128, not divisible by model.n_head=3" in p for p in problems)
    assert any(p.startswith("model.vocab_size: found 2; allowed: null") for p in problems)
    assert "training.max_steps: found 0; allowed: an integer >= 1" in problems
    assert "training.lr: found -1.0; allowed: a number > 0" in problems
    assert any(p.startswith("training.precision: found 'bf16mixed'")
               and "did you mean 'bf16-mixed'?" in p for p in problems)
    assert "data.val_fraction: found 1.0; allowed: a number in [0, 1)" in problems


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "model:\n  n_layer: 2\n bad: [\n")
    with pytest.raises(ConfigError, match=rf"not valid YAML at {path}:\d+"):
        load_config(path)


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="must be a mapping of sections, found list"):
        load_config(_write(tmp_path, "- a\n- b\n"))


def test_missing_file_says_how_to_create_one(tmp_path: Path) -> None:
    with pytest.raises(LlmkitError, match="llmkit new NAME"):
        load_config(tmp_path / CONFIG_NAME)


def test_find_project_walks_upward(tmp_path: Path) -> None:
    _write(tmp_path, "")
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    assert find_project(deep) == tmp_path.resolve()
    with pytest.raises(LlmkitError, match="llmkit new NAME"):
        find_project(tmp_path.parent / "nowhere-near-a-project-xyz")


# ----------------------------------------------------------------------- overrides


def test_overrides_are_typed_and_validated(tmp_path: Path) -> None:
    path = _write(tmp_path, "training:\n  lr: 0.001\n")
    cfg = load_config(path, ["training.lr=0.0003", "model.n_layer=4", "training.compile=true",
                             "training.devices=2", "model.size=small"])
    assert cfg.training.lr == 0.0003 and isinstance(cfg.training.lr, float)
    assert cfg.model.n_layer == 4 and isinstance(cfg.model.n_layer, int)
    assert cfg.training.compile is True and cfg.training.devices == 2
    assert cfg.model.n_embd == PRESETS["small"]["n_embd"]  # other keys from the new preset
    assert path.read_text() == "training:\n  lr: 0.001\n"  # overrides never touch the file


def test_exponent_overrides_like_3e_minus_4(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, "project: {}\n"), ["training.lr=3e-4", "model.n_layer=4"])
    assert cfg.training.lr == 3e-4 and cfg.model.n_layer == 4
    assert load_config(_write(tmp_path, "training:\n  lr: 1e-3\n")).training.lr == 1e-3


def test_bad_overrides_are_reported_together(tmp_path: Path) -> None:
    path = _write(tmp_path, "project: {}\n")
    problems = _problems(path, ["training.lr", "lr=3", "training.n_layr=4",
                                "model.n_layer=zero", "model.n_head=0"])
    assert len(problems) == 5, problems
    assert ("override 'training.lr': expected section.key=value, e.g. training.lr=3e-4"
            in problems)
    assert "override 'lr=3': expected section.key=value, e.g. training.lr=3e-4" in problems
    assert any(p.startswith("training.n_layr: unknown key") for p in problems)
    assert any(p.startswith("model.n_layer: found 'zero'") for p in problems)
    assert "model.n_head: found 0; allowed: an integer >= 1" in problems


# ----------------------------------------------------------------------- presets


def test_presets_fill_only_unset_keys(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, "model:\n  size: small\n  n_layer: 2\n"
                                       "training:\n  lr: 0.01\n"))
    small = PRESETS["small"]
    assert cfg.model.n_layer == 2  # set in the file: wins over the preset
    assert (cfg.model.n_head, cfg.model.n_embd, cfg.model.block_size) == (
        small["n_head"], small["n_embd"], small["block_size"])
    assert cfg.training.lr == 0.01
    assert cfg.training.batch_size == small["batch_size"]
    assert cfg.training.weight_decay == small["weight_decay"]


@pytest.mark.parametrize("size, preset", [("tiny", "tiny"), ("custom", "tiny"),
                                          ("base", "base")])
def test_each_preset(tmp_path: Path, size: str, preset: str) -> None:
    cfg = load_config(_write(tmp_path, f"model:\n  size: {size}\n"))
    for key in ("n_layer", "n_head", "n_embd", "block_size", "dropout"):
        assert getattr(cfg.model, key) == PRESETS[preset][key]


def test_an_empty_section_is_the_tiny_preset(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, "# nothing yet\nproject:\n"))
    assert cfg.model.size == "tiny" and cfg.model.n_layer == PRESETS["tiny"]["n_layer"]
    assert cfg.root == tmp_path.resolve()
    assert cfg.path("data/x.txt") == tmp_path.resolve() / "data" / "x.txt"


# ----------------------------------------------------------------------- write-back


def test_write_back_changes_only_the_value_line(scaffolded: Path) -> None:
    before = scaffolded.read_text(encoding="utf-8").splitlines(keepends=True)

    changed = write_back(scaffolded, {"model.vocab_size": 29, "training.max_steps": 1000})

    assert changed == {"model.vocab_size": (None, 29), "training.max_steps": (400, 1000)}
    after = scaffolded.read_text(encoding="utf-8").splitlines(keepends=True)
    assert len(after) == len(before)
    diff = {i: (b, a) for i, (b, a) in enumerate(zip(before, after, strict=True)) if a != b}
    assert sorted(diff.values()) == [("  max_steps: 400\n", "  max_steps: 1000\n"),
                                     ("  vocab_size: null\n", "  vocab_size: 29\n")]
    cfg = load_config(scaffolded)
    assert (cfg.model.vocab_size, cfg.training.max_steps) == (29, 1000)


def test_write_back_keeps_an_inline_comment(tmp_path: Path) -> None:
    path = _write(tmp_path, 'project:\n  name: "a # b"   # shown in logs\n'
                            "model:\n  vocab_size: null  # synced\n")
    write_back(path, {"project.name": "c # d", "model.vocab_size": 512})
    assert path.read_text() == ("project:\n  name: 'c # d'   # shown in logs\n"
                                "model:\n  vocab_size: 512  # synced\n")
    cfg = load_config(path)
    assert (cfg.project.name, cfg.model.vocab_size) == ("c # d", 512)


def test_write_back_appends_missing_keys_and_sections(tmp_path: Path) -> None:
    path = _write(tmp_path, "# my project\nmodel:\n  n_layer: 2  # small\n\n"
                            "training:\n  max_steps: 10\n")
    changed = write_back(path, {"model.vocab_size": 300, "logging.dir": "out"})
    assert changed == {"model.vocab_size": (None, 300), "logging.dir": (None, "out")}
    assert path.read_text() == ("# my project\nmodel:\n  n_layer: 2  # small\n"
                                "  vocab_size: 300\n\ntraining:\n  max_steps: 10\n"
                                "logging:\n  dir: out\n")
    cfg = load_config(path)
    assert (cfg.model.vocab_size, cfg.logging.dir, cfg.model.n_layer) == (300, "out", 2)


def test_write_back_is_atomic_and_keeps_permissions(tmp_path: Path) -> None:
    path = _write(tmp_path, "model:\n  vocab_size: null\n")
    os.chmod(path, 0o640)
    write_back(path, {"model.vocab_size": 100})
    assert os.listdir(tmp_path) == [CONFIG_NAME]  # no temporary file left behind
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_write_back_failure_leaves_the_file_alone(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path, "model:\n  vocab_size: null\n")

    def crash(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        write_back(path, {"model.vocab_size": 100})
    assert path.read_text() == "model:\n  vocab_size: null\n"
    assert os.listdir(tmp_path) == [CONFIG_NAME]


def test_write_back_of_the_same_value_does_not_rewrite(tmp_path: Path) -> None:
    path = _write(tmp_path, "model:\n  vocab_size: 100\n")
    inode = path.stat().st_ino
    assert write_back(path, {"model.vocab_size": 100}) == {}
    assert path.stat().st_ino == inode


def test_write_back_small_float_round_trips(tmp_path: Path) -> None:
    path = _write(tmp_path, "training:\n  lr: 0.001\n")
    write_back(path, {"training.lr": 1e-5})
    assert load_config(path).training.lr == 1e-5


def test_write_back_appends_to_a_file_without_final_newline(tmp_path: Path) -> None:
    path = _write(tmp_path, "model:\n  n_layer: 2")
    write_back(path, {"model.vocab_size": 300})
    assert path.read_text() == "model:\n  n_layer: 2\n  vocab_size: 300\n"


def test_appended_key_stays_above_the_next_sections_comment(tmp_path: Path) -> None:
    path = _write(tmp_path, "model:\n  n_layer: 2\n\n# how to train\ntraining:\n"
                            "  max_steps: 10\n")
    write_back(path, {"model.vocab_size": 300})
    assert path.read_text() == ("model:\n  n_layer: 2\n  vocab_size: 300\n\n# how to train\n"
                                "training:\n  max_steps: 10\n")
