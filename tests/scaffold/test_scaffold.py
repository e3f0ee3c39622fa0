"""`llmkit new`: real projects in tmp_path, loaded back with the real config loader."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jinja2
import pytest
import yaml
from click.testing import CliRunner

from llmkit.cli import cli
from llmkit.config import PRESETS, SECTIONS, load_config, write_back
from llmkit.errors import LlmkitError, ScaffoldError
from llmkit.scaffold import create_project, render_template, resolve_size
from llmkit.scaffold.project import _check_inside, template_context
from llmkit.scaffold.settings import config_values
from llmkit.sizing import recommend_for_data

NAME_RULES = "allowed: one plain folder name"


def _tree(root: Path) -> dict[str, bytes | str]:
    """Every entry under `root` with its content (files) or link target (symlinks)."""
    out: dict[str, bytes | str] = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_symlink():
            out[rel] = f"-> {os.readlink(p)}"
        elif p.is_file():
            out[rel] = p.read_bytes()
        else:
            out[rel] = "dir"
    return out


def _comment_lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.lstrip().startswith("#") or "  #" in ln]


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Work inside tmp_path, as `llmkit new` does in the user's current folder."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


# ----------------------------------------------------------------------- both tasks


def test_lm_project_trains_on_its_sample(here: Path) -> None:
    result = create_project("demo", here)

    assert result.root == (here / "demo").resolve()
    assert set(result.files) == {".gitignore", "README.md", "llmkit.yaml", "data/train.txt"}
    cfg = load_config(here / "demo")
    assert (cfg.project.name, cfg.project.task, cfg.model.size) == ("demo", "lm", "tiny")
    assert cfg.tokenizer.kind == "bpe"
    assert cfg.tokenizer.vocab_size <= 4000  # ~1 MB of text: a small vocabulary
    assert cfg.model.vocab_size is None  # written by the tokenizer, never guessed
    assert cfg.data.train == ["data/train.txt"] and cfg.data.val == []
    assert cfg.data.val_fraction == 0.1
    assert 100 <= cfg.training.max_steps <= 1000
    sample = cfg.path("data/train.txt").read_text(encoding="utf-8")
    assert 1_000_000 < len(sample) < 1_200_000 and sample.startswith("First Citizen:")
    assert sample.endswith("\n") and not sample.endswith("\n\n")  # cut at a paragraph end


def test_span_project_trains_on_its_sample(here: Path) -> None:
    result = create_project("spans", here, task="span")

    assert {"llmkit.yaml", "README.md", ".gitignore", "data/train.jsonl",
            "data/val.jsonl"} <= set(result.files)
    cfg = load_config(here / "spans")
    assert (cfg.project.task, cfg.tokenizer.kind) == ("span", "char")
    assert cfg.data.train == ["data/train.jsonl"] and cfg.data.val == ["data/val.jsonl"]
    longest_text = longest_span = 0
    for rel in ("data/train.jsonl", "data/val.jsonl"):
        for line in cfg.path(rel).read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            longest_text = max(longest_text, len(row["text"]))
            if row["span"] is not None:
                start, end = row["span"]
                assert 0 <= start < end <= len(row["text"])
                longest_span = max(longest_span, end - start)
    # char tokenizer: one token per character, plus <bos> and <eos> around each text
    assert cfg.model.block_size >= longest_text + 2
    assert cfg.span.max_span_tokens >= longest_span


@pytest.mark.parametrize("task", ["lm", "span"])
@pytest.mark.parametrize("size", ["tiny", "small", "base"])
def test_written_values_are_the_preset(here: Path, task: str, size: str) -> None:
    cfg = load_config(create_project(f"p-{task}-{size}", here, task=task, size=size).root)
    preset = PRESETS[size]
    assert cfg.model.size == size
    for key in ("n_layer", "n_head", "n_embd", "block_size", "dropout"):
        assert getattr(cfg.model, key) == preset[key], key
    for key in ("batch_size", "lr", "weight_decay"):
        assert getattr(cfg.training, key) == preset[key], key


def test_auto_size_is_tiny_on_the_sample(here: Path) -> None:
    assert resolve_size("auto", None) == ("tiny", {})
    assert load_config(create_project("a", here, size="auto").root).model.size == "tiny"


def test_auto_size_follows_the_users_data(here: Path, tmp_path: Path) -> None:
    # ~40 KB of text is far below what even tiny needs: tiny, with strong regularisation.
    small = tmp_path / "small.txt"
    small.write_text("".join(f"line {i} of a small corpus\n\n" for i in range(1500)))
    cfg = load_config(create_project("s", here, size="auto", data=small).root)
    assert cfg.model.size == "tiny"
    assert cfg.model.dropout == 0.2 and cfg.training.weight_decay >= 0.1
    # The same data with an explicit preset keeps that preset's own defaults.
    cfg = load_config(create_project("t", here, size="small", data=small).root)
    assert cfg.model.size == "small" and cfg.model.dropout == 0.1


@pytest.mark.parametrize("task", ["lm", "span"])
def test_every_key_is_written_and_commented(here: Path, task: str) -> None:
    text = (create_project("p", here, task=task).root / "llmkit.yaml").read_text()
    raw = yaml.safe_load(text)
    expected = [s for s in SECTIONS if task == "span" or s != "span"]
    assert list(raw) == expected
    for section in expected:
        fields = list(SECTIONS[section].__dataclass_fields__)
        assert list(raw[section]) == fields, f"{section}: keys missing or out of order"

    lines = text.splitlines()
    for i, line in enumerate(lines):
        if not line.startswith("  ") or line.lstrip().startswith("#"):
            continue
        key = line.split(":")[0].strip()
        above = lines[i - 1].strip()
        # bos, eos and pad share one comment
        grouped = key in ("eos", "pad") and above.split(":")[0] in ("bos", "eos")
        assert above.startswith("#") or "  #" in line or grouped, f"{key} has no comment"


@pytest.mark.parametrize("task", ["lm", "span"])
def test_vocab_sync_keeps_every_comment(here: Path, task: str) -> None:
    path = create_project("p", here, task=task).root / "llmkit.yaml"
    before = path.read_text(encoding="utf-8")

    assert write_back(path, {"model.vocab_size": 423}) == {"model.vocab_size": (None, 423)}

    after = path.read_text(encoding="utf-8")
    assert _comment_lines(after) == _comment_lines(before)
    pairs = zip(before.splitlines(), after.splitlines(), strict=True)  # no line added or lost
    changed = [(a, b) for a, b in pairs if a != b]
    assert changed == [("  vocab_size: null", "  vocab_size: 423")]
    assert load_config(path).model.vocab_size == 423


@pytest.mark.parametrize("name", ["yes", "null", "1e3", "123", "a #b", "ümlaut proj"])
def test_project_name_stays_a_string(here: Path, name: str) -> None:
    assert load_config(create_project(name, here).root).project.name == name


def test_readme_and_gitignore(here: Path) -> None:
    root = create_project("p", here, task="span").root
    readme = (root / "README.md").read_text()
    for command in ("llmkit train", "tensorboard --logdir runs", "llmkit predict --text",
                    "llmkit eval", "llmkit size", "llmkit smoke"):
        assert command in readme
    assert "llmkit generate --prompt" in (create_project("q", here).root / "README.md").read_text()
    ignored = [ln for ln in (root / ".gitignore").read_text().splitlines()
               if ln and not ln.startswith("#")]
    assert ignored == ["/runs/", "/data/.cache/"]  # the tokenizer stays tracked


def test_summary_lists_files_then_next_command(here: Path) -> None:
    result = create_project("demo", here)
    lines = result.summary().splitlines()
    for rel in result.files:
        assert f"  demo/{rel}" in lines
    assert lines[-1] == "Next: cd demo && llmkit train"


def test_next_command_from_another_folder(here: Path, tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    result = create_project("my proj", tmp_path / "elsewhere")
    assert result.next_command == "cd 'elsewhere/my proj' && llmkit train"


def test_no_temporary_files_left(here: Path) -> None:
    root = create_project("p", here, task="span").root
    assert not [p for p in root.rglob("*") if p.name.endswith(".tmp")]


def test_scaffold_does_not_import_torch() -> None:
    code = ("import sys, llmkit.scaffold; "
            "print(sorted(m for m in ('torch', 'lightning') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


# ----------------------------------------------------------------------- refusals


def test_refuses_a_non_empty_folder(here: Path) -> None:
    (here / "demo").mkdir()
    (here / "demo" / "notes.txt").write_text("mine")
    (here / "demo" / "llmkit.yaml").write_text("keep me\n")
    before = _tree(here)

    with pytest.raises(ScaffoldError, match=r"already exists and is not empty.*--force"):
        create_project("demo", here)

    assert _tree(here) == before


def test_force_overwrites_llmkit_files_and_keeps_the_rest(here: Path) -> None:
    (here / "demo" / "runs").mkdir(parents=True)
    (here / "demo" / "notes.txt").write_text("mine")
    (here / "demo" / "runs" / "events").write_text("old run")
    (here / "demo" / "llmkit.yaml").write_text("stale: true\n")

    create_project("demo", here, force=True)

    assert (here / "demo" / "notes.txt").read_text() == "mine"
    assert (here / "demo" / "runs" / "events").read_text() == "old run"
    assert load_config(here / "demo").project.task == "lm"


def test_an_empty_folder_is_fine_without_force(here: Path) -> None:
    (here / "demo").mkdir()
    assert load_config(create_project("demo", here).root).project.name == "demo"


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "../x", "-x", "a\\b", "a\x00b",
                                  "a\nb", " padded "])
def test_bad_names_are_refused_and_nothing_is_written(tmp_path: Path, name: str) -> None:
    parent = tmp_path / "parent" / "here"
    parent.mkdir(parents=True)
    before = _tree(tmp_path)

    with pytest.raises(ScaffoldError, match=NAME_RULES):
        create_project(name, parent)

    assert _tree(tmp_path) == before


def test_bad_task_and_size(here: Path) -> None:
    with pytest.raises(ScaffoldError, match=r"--task 'qa'.*allowed: lm .* or span"):
        create_project("p", here, task="qa")
    with pytest.raises(ScaffoldError, match=r"--size 'huge'.*allowed: auto, tiny, small, base"):
        create_project("p", here, size="huge")
    assert not (here / "p").exists()


def test_a_file_in_the_way(here: Path) -> None:
    (here / "p").write_text("a file")
    with pytest.raises(ScaffoldError, match="not a folder"):
        create_project("p", here, force=True)


def test_a_planning_error_writes_nothing(here: Path) -> None:
    # README.md is a folder in the target: found while checking the plan, before writing.
    (here / "p" / "README.md").mkdir(parents=True)
    with pytest.raises(ScaffoldError, match="folder of that name is in the way"):
        create_project("p", here, force=True)
    assert _tree(here / "p") == {"README.md": "dir"}


def test_symlink_out_of_the_project_is_refused(here: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (here / "p").mkdir()
    (here / "p" / "data").symlink_to(outside, target_is_directory=True)

    with pytest.raises(ScaffoldError, match="outside the project"):
        create_project("p", here, force=True)

    assert list(outside.iterdir()) == []
    assert not (here / "p" / "llmkit.yaml").exists()


@pytest.mark.parametrize("rel", ["../evil.txt", "/etc/evil", "data/../../evil", ""])
def test_planned_paths_cannot_escape(tmp_path: Path, rel: str) -> None:
    with pytest.raises(ScaffoldError, match="refusing to write"):
        _check_inside(tmp_path, rel)


def test_errors_are_llmkit_errors() -> None:
    assert issubclass(ScaffoldError, LlmkitError)  # the CLI prints them in one line


# ----------------------------------------------------------------------- --data


def test_data_file_replaces_the_sample(here: Path, tmp_path: Path) -> None:
    mine = tmp_path / "corpus.txt"
    mine.write_text("to be or not to be\n" * 50)

    result = create_project("p", here, data=mine)

    assert "data/corpus.txt" in result.files and "data/train.txt" not in result.files
    cfg = load_config(result.root)
    assert cfg.data.train == ["data/corpus.txt"] and cfg.data.val == []
    assert cfg.path("data/corpus.txt").read_bytes() == mine.read_bytes()
    assert not cfg.path("data/corpus.txt").is_symlink()
    assert not cfg.path("data/train.txt").exists()


def test_data_folder_keeps_validation_files_apart(here: Path, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    (corpus / "more").mkdir(parents=True)
    (corpus / ".cache").mkdir()
    (corpus / "a.txt").write_text("alpha\n")
    (corpus / "more" / "b.jsonl").write_text('{"text": "beta"}\n')
    (corpus / "val.txt").write_text("held out\n")
    (corpus / "notes.csv").write_text("x,y\n")
    (corpus / ".cache" / "c.txt").write_text("hidden\n")

    result = create_project("p", here, data=corpus)

    cfg = load_config(result.root)
    assert cfg.data.train == ["data/corpus/a.txt", "data/corpus/more/b.jsonl"]
    assert cfg.data.val == ["data/corpus/val.txt"]
    assert cfg.path("data/corpus/more/b.jsonl").read_text() == '{"text": "beta"}\n'
    assert not cfg.path("data/corpus/notes.csv").exists()
    assert not cfg.path("data/corpus/.cache").exists()
    assert "not used as data" in result.summary() and "notes.csv" in result.summary()


def test_big_data_folder_becomes_a_glob(here: Path, tmp_path: Path) -> None:
    shards = tmp_path / "shards"
    shards.mkdir()
    for i in range(25):
        (shards / f"{i:03d}.txt").write_text(f"shard {i}\n")

    cfg = load_config(create_project("p", here, data=shards).root)

    assert cfg.data.train == ["data/shards/*.txt"]
    assert len(list(cfg.root.glob(cfg.data.train[0]))) == 25


@pytest.mark.skipif(os.name == "nt", reason="symlinks need privileges on Windows")
def test_link_data(here: Path, tmp_path: Path) -> None:
    corpus = tmp_path / "big"
    corpus.mkdir()
    (corpus / "a.jsonl").write_text('{"text": "x", "span": null}\n')

    root = create_project("p", here, task="span", data=corpus, link_data=True).root

    link = root / "data" / "big"
    assert link.is_symlink() and link.resolve() == corpus.resolve()
    assert load_config(root).data.train == ["data/big/a.jsonl"]
    # again with --force: the link is replaced, never written through
    create_project("p", here, task="span", data=corpus, link_data=True, force=True)
    assert (corpus / "a.jsonl").read_text() == '{"text": "x", "span": null}\n'


@pytest.mark.skipif(os.name == "nt", reason="symlinks need privileges on Windows")
def test_copy_over_an_earlier_link_leaves_the_source_alone(here: Path, tmp_path: Path) -> None:
    mine = tmp_path / "mine.txt"
    mine.write_text("original\n")
    create_project("p", here, data=mine, link_data=True)
    assert (here / "p" / "data" / "mine.txt").is_symlink()

    create_project("p", here, data=mine, force=True)

    copy = here / "p" / "data" / "mine.txt"
    assert not copy.is_symlink() and copy.read_text() == "original\n"
    assert mine.read_text() == "original\n"


def test_data_already_in_the_project_is_not_clobbered(here: Path) -> None:
    (here / "p" / "data").mkdir(parents=True)
    inside = here / "p" / "data" / "mine.txt"
    inside.write_text("precious\n")

    create_project("p", here, data=inside, force=True, link_data=True)

    assert not inside.is_symlink() and inside.read_text() == "precious\n"
    assert load_config(here / "p").data.train == ["data/mine.txt"]


def test_missing_data_path(here: Path) -> None:
    with pytest.raises(ScaffoldError, match=r"--data nowhere/x\.txt: no such file or folder"):
        create_project("p", here, data=Path("nowhere/x.txt"))
    assert not (here / "p").exists()


def test_span_data_must_be_jsonl(here: Path, tmp_path: Path) -> None:
    (tmp_path / "plain.txt").write_text("no spans here\n")
    with pytest.raises(ScaffoldError, match=r"span projects read \.jsonl files, not \.txt"):
        create_project("p", here, task="span", data=tmp_path / "plain.txt")
    (tmp_path / "texts").mkdir()
    (tmp_path / "texts" / "a.txt").write_text("x\n")
    with pytest.raises(ScaffoldError, match=r"holds no \.jsonl files"):
        create_project("p", here, task="span", data=tmp_path / "texts")
    assert not (here / "p").exists()


# ----------------------------------------------------------------------- rendering


def test_rendering_with_a_missing_variable_fails_loudly() -> None:
    context = template_context(config_values("p", "span", "tiny"), own_data=False)
    assert "max_span_tokens: 128" in render_template("span/llmkit.yaml.j2", context)

    with pytest.raises(jinja2.UndefinedError, match="own_data"):
        render_template("span/llmkit.yaml.j2", {k: v for k, v in context.items()
                                                if k != "own_data"})
    incomplete = dict(context, model={k: v for k, v in context["model"].items()
                                      if k != "n_layer"})
    with pytest.raises(jinja2.UndefinedError, match="n_layer"):
        render_template("lm/llmkit.yaml.j2", incomplete)


def test_data_repeated_keeps_train_and_validation_apart(here: Path, tmp_path: Path) -> None:
    train, dev = tmp_path / "train.jsonl", tmp_path / "dev.jsonl"
    line = '{"question": "who?", "context": "the king went", "span": [4, 8]}\n'
    train.write_text(line * 20)
    dev.write_text(line * 5)

    result = create_project("p", here, task="span", data=[train, dev])

    cfg = load_config(result.root)
    assert cfg.data.train == ["data/train.jsonl"] and cfg.data.val == ["data/dev.jsonl"]
    assert cfg.path("data/dev.jsonl").read_text() == dev.read_text()
    # The CLI takes --data more than once, in the same way.
    proc = CliRunner().invoke(cli, ["-C", str(here), "new", "q", "--task", "span",
                                    "--data", str(train), "--data", str(dev)])
    assert proc.exit_code == 0, proc.output
    assert load_config(here / "q").data.val == ["data/dev.jsonl"]


def test_data_paths_that_collide_are_refused(here: Path, tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "x.txt").write_text("one\n")
    (tmp_path / "b" / "x.txt").write_text("two\n")
    with pytest.raises(ScaffoldError, match=r"would both become data/x\.txt"):
        create_project("p", here, data=[tmp_path / "a" / "x.txt", tmp_path / "b" / "x.txt"])
    assert not (here / "p").exists()  # nothing written


def test_span_project_on_own_text_uses_bpe_and_a_context_for_its_lengths(
        here: Path, tmp_path: Path) -> None:
    # Natural-language examples of ~1,600 characters (~400 estimated BPE tokens).
    context = "The quick brown fox jumps over the lazy dog near the river bank. " * 25
    rows = [json.dumps({"question": f"Where does fox {i} jump?", "context": context,
                        "span": [4, 9]}) for i in range(200)]
    (tmp_path / "qa.jsonl").write_text("\n".join(rows) + "\n")

    result = create_project("p", here, task="span", data=tmp_path / "qa.jsonl")

    cfg = load_config(result.root)
    assert cfg.tokenizer.kind == "bpe" and cfg.tokenizer.vocab_size == 2000
    assert cfg.model.block_size == 512  # the smallest context holding 90% in one window
    notes = result.summary()
    assert "span examples are about median 416, p90 416, p99 416, max 416 tokens" in notes
    assert "model.block_size 512: the p90 example takes 1 window(s)" in notes
    # With a preset's context the note says how many windows the examples take.
    tiny = create_project("t", here, task="span", size="tiny", data=tmp_path / "qa.jsonl")
    assert load_config(tiny.root).model.block_size == 128
    assert "model.block_size 128: the p90 example takes 6 window(s)" in tiny.summary()
    assert "model.block_size 512 would hold 90% of the examples in one window" in \
        tiny.summary()
    # The sample project keeps its char tokenizer (symbolic lambda terms).
    assert load_config(create_project("s", here, task="span").root).tokenizer.kind == "char"


def test_span_project_on_own_text_is_sized_for_bpe_tokens(here: Path, tmp_path: Path) -> None:
    # 800 examples: ~1.5 characters per tiny-model parameter but ~0.4 BPE tokens, which
    # is below one token per parameter: the stronger weight decay.
    context = "The quick brown fox jumps over the lazy dog near the river bank. " * 25
    rows = [json.dumps({"question": f"Where does fox {i} jump?", "context": context,
                        "span": [4, 9]}) for i in range(800)]
    (tmp_path / "qa.jsonl").write_text("\n".join(rows) + "\n")
    bpe = recommend_for_data(tmp_path / "qa.jsonl", kind="bpe", task="span")
    char = recommend_for_data(tmp_path / "qa.jsonl", kind="char", task="span")
    assert bpe.weight_decay != char.weight_decay  # the data tells the two apart

    cfg = load_config(create_project("p", here, task="span", data=tmp_path / "qa.jsonl").root)
    assert cfg.tokenizer.kind == "bpe"
    assert (cfg.model.size, cfg.model.dropout, cfg.training.weight_decay) == \
        (bpe.preset, bpe.dropout, bpe.weight_decay)
