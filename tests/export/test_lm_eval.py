"""lm-evaluation-harness runs on an export (only when lm_eval is installed; llmkit does not
depend on it)."""

from __future__ import annotations

import math

import pytest

from llmkit.export import export_model
from llmkit.inference import load_model

lm_eval_models = pytest.importorskip("lm_eval.models.huggingface")
pytest.importorskip("transformers")


def test_lm_eval_scores_an_exported_model(trained_project, tmp_path):
    from lm_eval.api.instance import Instance

    cfg = trained_project("lm_eval", tokenizer="bpe")
    out = tmp_path / "hf"
    export_model(load_model(cfg, log=lambda _: None), out)
    # the harness's own HF wrapper, as `lm_eval --model hf --model_args pretrained=DIR` builds
    lm = lm_eval_models.HFLM(pretrained=str(out), device="cpu", batch_size=1)
    requests = [Instance(request_type="loglikelihood", doc={}, idx=0,
                         arguments=("the king and", " queen"))]
    (loglik, _greedy), = lm.loglikelihood(requests)
    assert math.isfinite(loglik) and loglik < 0
