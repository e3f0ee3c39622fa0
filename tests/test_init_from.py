"""`model.init_from`: a span model's trunk starts as a language model trained on the same
text with the same tokenizer, and anything that would make the ids or shapes disagree is
refused with both sides named."""

from __future__ import annotations

import shutil

import pytest
import torch

from llmkit.checkpoint import find_checkpoint, load_checkpoint
from llmkit.config import load_config
from llmkit.errors import CheckpointError, VocabMismatchError
from llmkit.init_from import init_trunk
from llmkit.trainer.build import build_module
from llmkit.trainer.run import train
from llmkit.vocab_sync import ensure_tokenizer


def quiet(_: str) -> None:
    pass


@pytest.fixture
def lm_project(tiny_project):
    """A tiny LM project trained for 2 real steps (a real Lightning checkpoint)."""
    cfg = tiny_project("lm", name="lm", config={"training": {"max_steps": 2,
                                                             "val_every_steps": 2}})
    train(cfg.root, log=quiet, progress=False)
    return load_config(cfg.root)


def _span(tiny_project, make_span_lines, *, copy_tokenizer: bool = True, **config):
    """A span project next to the LM; the LM's tokenizer copied in (the same bytes, so the
    same hash), as docs/training.md says."""
    base = {"model": {"init_from": "../lm"}}
    for section, values in config.items():
        base.setdefault(section, {}).update(values)
    cfg = tiny_project("span", name="spans", files={"data/train.jsonl": make_span_lines()},
                       config=base)
    if copy_tokenizer:
        (cfg.root / "tokenizer").mkdir(exist_ok=True)
        for f in (cfg.root.parent / "lm" / "tokenizer").iterdir():
            shutil.copyfile(f, cfg.root / "tokenizer" / f.name)
    return cfg


def test_trunk_weights_equal_the_lms_after_loading(lm_project, tiny_project, make_span_lines):
    cfg, tok = ensure_tokenizer(_span(tiny_project, make_span_lines), log=quiet)
    module = build_module(cfg, tok)
    message = init_trunk(module.model.transformer, cfg, tok)
    assert "trunk weights from" in message and "best-step" in message

    lm_state = load_checkpoint(find_checkpoint(lm_project, None))["state_dict"]
    trunk = module.model.transformer.state_dict()
    lm_trunk = {k.removeprefix("model.transformer."): v for k, v in lm_state.items()
                if k.startswith("model.transformer.")}
    assert trunk.keys() == lm_trunk.keys() and len(trunk) > 10
    for name, value in trunk.items():
        assert torch.equal(value, lm_trunk[name]), name
    # The same weights, read both ways: the span trunk is bidirectional.
    assert module.model.transformer.config.causal is False
    assert lm_project.project.task == "lm"


def test_training_a_span_model_starts_from_the_lm(lm_project, tiny_project, make_span_lines):
    cfg = _span(tiny_project, make_span_lines,
                training={"max_steps": 1, "val_every_steps": 1})
    logged: list[str] = []
    train(cfg.root, log=logged.append, progress=False)
    assert any(m.startswith("model.init_from: trunk weights from") for m in logged), logged


def test_another_tokenizer_is_refused_naming_both_hashes(lm_project, tiny_project,
                                                          make_span_lines, project_tokenizer):
    cfg = _span(tiny_project, make_span_lines, copy_tokenizer=False)
    (cfg.root / "data" / "more.jsonl").write_text('{"text": "zzz qqq", "span": null}\n')
    own = project_tokenizer(cfg)  # trained on other text: another file, another hash
    cfg, tok = ensure_tokenizer(cfg, log=quiet)
    lm_tok = load_checkpoint(find_checkpoint(lm_project, None))["llmkit"]["tokenizer_hash"]
    assert own.hash != lm_tok
    module = build_module(cfg, tok)
    with pytest.raises(VocabMismatchError) as e:
        init_trunk(module.model.transformer, cfg, tok)
    assert f"hash {lm_tok[:12]}" in str(e.value) and f"hash {tok.hash[:12]}" in str(e.value)
    assert "copy the LM project's tokenizer/ files into this project" in str(e.value)


def _refusal(lm_project, tiny_project, make_span_lines, **model) -> str:
    """init_trunk's CheckpointError message for a span config with these model keys."""
    cfg = _span(tiny_project, make_span_lines, model=model)
    cfg, tok = ensure_tokenizer(cfg, log=quiet)
    module = build_module(cfg, tok)
    with pytest.raises(CheckpointError) as e:
        init_trunk(module.model.transformer, cfg, tok)
    return str(e.value)


def test_a_different_shape_is_refused_saying_what_differs(lm_project, tiny_project,
                                                         make_span_lines):
    message = _refusal(lm_project, tiny_project, make_span_lines, n_embd=32, n_layer=3)
    assert "model.n_layer: LM 2, span config 3; model.n_embd: LM 16, span config 32" in message


def test_another_architecture_is_refused_not_a_traceback(lm_project, tiny_project,
                                                        make_span_lines):
    theirs = lm_project.model.arch
    other = "gpt2" if theirs != "gpt2" else "qwen3"
    message = _refusal(lm_project, tiny_project, make_span_lines, arch=other)
    assert f"model.arch: LM '{theirs}', span config '{other}'" in message


def test_init_from_a_missing_path_is_refused(lm_project, tiny_project,
                                                       make_span_lines):
    cfg, tok = ensure_tokenizer(_span(tiny_project, make_span_lines,
                                      model={"init_from": "nowhere.ckpt"}), log=quiet)
    module = build_module(cfg, tok)
    with pytest.raises(CheckpointError, match="nowhere.ckpt does not exist"):
        init_trunk(module.model.transformer, cfg, tok)
