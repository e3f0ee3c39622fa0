"""`llmkit lens` option checks: every problem at once, before any checkpoint is read."""

from __future__ import annotations

import pytest

from llmkit.commands.lens import LensError, LensOptions, _check_options, options_from_flags
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
