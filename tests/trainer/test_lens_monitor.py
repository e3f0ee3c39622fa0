"""The lens while training, and TensorBoard as a user opens it: a real `train()` run whose
event files are read back."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
import yaml
from tensorboard.plugins.hparams import plugin_data_pb2

from llmkit.trainer.callbacks.lens import LensMonitor, lens_tags
from llmkit.trainer.callbacks.standard import _lens
from llmkit.trainer.callbacks.tensorboard import final_metrics, layout
from llmkit.trainer.result import RunResult
from llmkit.trainer.run import train
from tests.conftest import lm_text


def tiny_lm_run(root: Path, logging: dict) -> RunResult:
    """Train a tiny LM 6 steps at `root`, validating every 2 steps."""
    (root / "data").mkdir(parents=True)
    (root / "data" / "train.txt").write_text(lm_text(60), encoding="utf-8")
    raw = {"project": {"name": "proj", "task": "lm"},
           "data": {"train": ["data/train*"], "val_fraction": 0.2},
           "tokenizer": {"kind": "char"},
           "model": {"size": "custom", "n_layer": 2, "n_head": 2, "n_embd": 16,
                     "block_size": 32, "dropout": 0.0},
           "training": {"batch_size": 4, "max_steps": 6, "lr": 1e-3, "warmup_steps": 0,
                        "val_every_steps": 2, "val_batches": 2},
           "logging": {"log_every_steps": 1, **logging}}
    (root / "llmkit.yaml").write_text(yaml.safe_dump(raw), encoding="utf-8")
    torch.set_num_threads(1)
    return train(root, progress=False, log=lambda _: None)


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory):
    """A tiny LM trained 6 steps, validating every 2 (three lens measurements)."""
    return tiny_lm_run(tmp_path_factory.mktemp("lens-run") / "proj", {"lens_windows": 3})


def test_lens_scalars_for_every_layer_at_every_validation(lm_run, read_events):
    events = read_events(lm_run.run_dir)
    assert set(lens_tags(2)) <= events.scalar_tags
    assert not any(t.startswith("lens/") and t not in lens_tags(2) for t in events.scalar_tags)
    # one measurement per validation, at the optimizer step it followed (as overfit/*)
    assert len(events.scalars("val/loss")) == 3
    val_steps = [s for s, _ in events.scalars("overfit/gap")]
    for tag in lens_tags(2):
        assert [s for s, _ in events.scalars(tag)] == val_steps == [2, 4, 6]
    assert all(v == 0.0 for _, v in events.scalars("lens/kl_bits/layer_2"))
    assert all(v == 1.0 for _, v in events.scalars("lens/top1_agree/layer_2"))
    assert all(v > 0.0 for _, v in events.scalars("lens/kl_bits/layer_0"))
    # the last layer's own cross-entropy is the validation loss of the same windows' model,
    # in bits; on 3 of the validation windows it is close to, not equal to, val/loss
    for (_, ce), (_, loss) in zip(events.scalars("lens/ce_bits/layer_2"),
                                  events.scalars("val/loss"), strict=True):
        assert ce == pytest.approx(loss / 0.6931471805599453, rel=0.2)


def test_no_epoch_series_and_a_layout_and_hparams_are_written(lm_run, read_events):
    events = read_events(lm_run.run_dir)
    assert "epoch" not in events.scalar_tags
    assert events.plugin_data("custom_scalars"), "no custom-scalars layout in the events"
    hp = [plugin_data_pb2.HParamsPluginData.FromString(c)
          for c in events.plugin_data("hparams")]
    (start,) = [h for h in hp if h.HasField("session_start_info")]
    values = start.session_start_info.hparams
    assert values["model.n_layer"].number_value == 2
    assert values["task"].string_value == "lm"
    (exp,) = [h for h in hp if h.HasField("experiment")]
    declared = [m.name.tag for m in exp.experiment.metric_infos]
    assert declared == final_metrics("lm")
    assert set(declared) <= events.scalar_tags  # HPARAMS reads their final values


def test_every_logged_scalar_is_on_a_custom_chart_and_loss_shares_one(lm_run, read_events):
    events = read_events(lm_run.run_dir)
    charts = layout("lm")
    regexes = [r for cat in charts.values() for _, tags in cat.values() for r in tags]
    for tag in events.scalar_tags:
        assert any(re.search(r, tag) for r in regexes), tag
    loss_chart = charts["1 overview"]["train and validation loss"][1]
    assert all(any(re.search(r, t) for r in loss_chart) for t in ("train/loss", "val/loss"))
    for metric in ("kl_bits", "ce_bits", "top1_agree"):  # one chart holds every layer
        (chart,) = [tags for cat in charts.values() for tags in cat.values()
                    if any(metric in r for r in tags[1])]
        assert all(re.search(chart[1][0], f"lens/{metric}/layer_{i}") for i in range(3))
    assert "2 lens (every layer)" not in layout("span")
    json.dumps(charts)  # plain data


def test_monitor_arguments_are_checked():
    with pytest.raises(ValueError, match="num_windows"):
        LensMonitor(num_windows=0)
    with pytest.raises(ValueError, match="every_n_steps"):
        LensMonitor(every_n_steps=-1)


def test_every_n_steps_measures_between_validations(tmp_path, read_events):
    run = tiny_lm_run(tmp_path / "proj", {"lens_windows": 2, "lens_every_steps": 3})
    events = read_events(run.run_dir)
    for tag in lens_tags(2):
        assert [s for s, _ in events.scalars(tag)] == [3, 6]
    assert all(v == 0.0 for _, v in events.scalars("lens/kl_bits/layer_2"))


@pytest.mark.parametrize(("task", "changes", "on"), [
    ("lm", {}, True),
    ("lm", {"logging": {"lens_windows": 0}}, False),
    ("lm", {"training": {"strategy": "fsdp"}}, False),
    ("span", {}, False),
])
def test_the_lens_runs_by_default_for_lm_only(tiny_project, task, changes, on):
    cfg = tiny_project(task, config=changes)
    callbacks = _lens(cfg)
    assert [type(c) for c in callbacks] == ([LensMonitor] if on else [])
    if on:
        assert callbacks[0].num_windows == 8 and callbacks[0].every_n_steps == 0
