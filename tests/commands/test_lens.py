"""`llmkit lens` option checks: every problem at once, before any checkpoint is read."""

from __future__ import annotations

import pytest

from llmkit.commands.lens import (
    LensError,
    LensOptions,
    _check_options,
    _lm_inputs,
    options_from_flags,
)
from llmkit.inspect.lens import LensSettings

FLAGS = {"prompt": "a", "target": None, "control_prompt": None, "control_target": None,
         "variants": (), "lens_kind": "logit", "train_tuned": False, "tuned_steps": 300,
         "top_k": 5, "positions": "last", "copy_prob": 0.5, "copy_margin": 0.2,
         "copy_window": 2, "heatmap": "entropy", "checkpoint": None, "json_path": None,
         "html_path": None}


def test_lm_option_problems_are_reported_together(tiny_project):
    cfg = tiny_project("lm")
    opts = LensOptions(prompt="a", control_prompt="b", tuned_steps=0)
    with pytest.raises(LensError) as e:
        _check_options(cfg, opts)
    assert "--control-prompt and --control-target go together" in str(e.value)
    assert "a control needs --target" in str(e.value)
    assert "--tuned-steps must be >= 1, got 0" in str(e.value)
    _check_options(cfg, LensOptions(prompt="a", target="b", control_prompt="c",
                                    control_target="d", lens="both", train_tuned=True))


def test_span_checkpoints_refuse_lm_only_flags(tiny_project):
    cfg = tiny_project("span")
    with pytest.raises(LensError, match="--lens tuned/both, --variant: only for language-model"):
        _check_options(cfg, LensOptions(prompt="a", lens="tuned", variants=("x=y",)))
    _check_options(cfg, LensOptions(prompt="a", target="a"))


def test_flags_become_options_with_their_sources():
    opts = options_from_flags({**FLAGS, "top_k": 3, "lens_kind": "both"},
                              frozenset({"top_k", "lens_kind"}))
    assert opts.settings == LensSettings(top_k=3)
    assert opts.lens == "both" and opts.flags_given == {"top_k", "lens"}
    with pytest.raises(LensError, match="copy_window must be >= 1"):
        options_from_flags({**FLAGS, "copy_window": 0}, frozenset())


def test_prompts_become_separate_inputs_after_the_vocabulary_check(tiny_project,
                                                                   project_tokenizer):
    cfg = tiny_project("lm")  # a char tokenizer, block_size 32
    tok = project_tokenizer(cfg)
    notes: list[str] = []
    opts = LensOptions(prompt="the king", target="went", variants=("alt=the queen",),
                       control_prompt="old men", control_target="sat")
    inputs = _lm_inputs(cfg, tok, opts, notes)
    assert [i.name for i in inputs] == ["prompt", "alt", "control"]
    main, alt, control = inputs
    assert main.ids == (2, *tok.encode("the king")) and main.prompt_ids == tuple(
        tok.encode("the king"))
    assert main.target == tok.encode("w")[0] and main.foil is None
    assert alt.target == main.target
    assert control.target == tok.encode("s")[0] and control.foil == main.target
    assert notes == ["--target 'went' is 4 tokens; the lens follows its first token 'w'",
                     "--control-target 'sat' is 3 tokens; the lens follows its first "
                     "token 's'"]
    with pytest.raises(LensError, match="longer than model.block_size 32"):
        _lm_inputs(cfg, tok, LensOptions(prompt="the king " * 5), [])
    with pytest.raises(LensError, match="expected NAME=TEXT"):
        _lm_inputs(cfg, tok, LensOptions(prompt="a", variants=("novalue",)), [])
    with pytest.raises(LensError, match="used twice"):
        _lm_inputs(cfg, tok, LensOptions(prompt="a", variants=("control=b",)), [])
