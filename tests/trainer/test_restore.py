"""load_trained: a checkpoint back in its LightningModule, with exactly its weights."""

from __future__ import annotations

import pytest
import torch

from llmkit.checkpoint import load_checkpoint
from llmkit.trainer.lm_module import LMModule
from llmkit.trainer.restore import load_trained
from llmkit.trainer.span_module import SpanModule


@pytest.mark.parametrize("task", ["lm", "span"])
def test_the_module_holds_the_checkpoints_weights_and_nothing_unloaded(trained_project, task):
    kind = {"lm": LMModule, "span": SpanModule}[task]
    cfg = trained_project(task, task=task, tokenizer="char", block_size=64)
    _, _, module, path = load_trained(cfg, log=lambda _: None)
    assert isinstance(module, kind) and not module.training and not module.model.training
    tensors = [*module.parameters(), *module.buffers()]
    assert all(t.device.type == "cpu" for t in tensors)  # none left on the meta device
    saved = load_checkpoint(path)["state_dict"]
    ours = module.state_dict()
    assert ours.keys() == saved.keys()
    assert all(torch.equal(ours[k], saved[k]) for k in saved)
    ids = torch.tensor([[1, 2, 3]])
    out = module.model(ids) if task == "lm" else module.model(ids, torch.ones_like(ids).bool())
    assert all(torch.isfinite(t).all() for t in (out if isinstance(out, tuple) else (out,))
               if t is not None)
