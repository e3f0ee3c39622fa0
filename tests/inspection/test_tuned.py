"""The tuned lens: starts as the logit lens, learns to match the model, belongs to one
set of weights."""

from __future__ import annotations

import pytest
import torch

from llmkit.inspect.lens import LensSettings, lens_run
from llmkit.inspect.tuned import (
    TunedLens,
    TunedLensError,
    fingerprint,
    load_tuned_lens,
    save_tuned_lens,
    train_tuned_lens,
    tuned_lens_path,
    validation_kl,
)
from tests.inspection.helpers import N_LAYER, C, V, inp, tiny_lm, token_text


def test_zero_initialised_tuned_lens_is_the_logit_lens():
    model = tiny_lm(10)
    settings = LensSettings(positions="all")
    logit = lens_run(model, inp([3, 4, 5], target=6), settings, "logit", token_text)
    tuned = lens_run(model, inp([3, 4, 5], target=6), settings, "tuned", token_text,
                     TunedLens(N_LAYER, C))
    assert tuned["layers"] == logit["layers"]
    assert tuned["summary"] == logit["summary"]


def test_training_lowers_every_layers_validation_kl_and_leaves_the_model_alone():
    model = tiny_lm(11)
    with torch.no_grad():  # a stream that changes with depth, so the lenses have work
        for block in model.transformer.h:
            block.mlp.c_proj.weight.mul_(20.0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    g = torch.Generator().manual_seed(0)
    train = (torch.randint(3, V, (8, 12), generator=g) for _ in range(1000))
    val = [torch.randint(3, V, (8, 12), generator=g) for _ in range(2)]
    lens = train_tuned_lens(model, train, 60, lr=3e-3)
    logit_kl = validation_kl(model, val)
    tuned_kl = validation_kl(model, val, lens)
    assert logit_kl[-1] == 0.0 and tuned_kl[-1] == 0.0
    for i in range(N_LAYER):
        assert tuned_kl[i] < logit_kl[i], (i, tuned_kl, logit_kl)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.requires_grad for p in model.parameters())


def test_translators_of_another_checkpoint_are_refused(tmp_path):
    ours, theirs = tiny_lm(12), tiny_lm(13)
    ckpt = tmp_path / "best-step000010.ckpt"
    path = tuned_lens_path(ckpt)
    assert path == tmp_path / "best-step000010.tuned-lens.pt"
    lens = TunedLens(N_LAYER, C)
    with torch.no_grad():
        lens.translators[0].bias.fill_(0.5)
    save_tuned_lens(path, lens, fingerprint(ours), {"steps": 1})
    loaded, info = load_tuned_lens(path, fingerprint(ours), ckpt)
    assert info == {"steps": 1}
    assert torch.equal(loaded.translators[0].bias, lens.translators[0].bias)
    with pytest.raises(TunedLensError, match="trained for other weights.*--train-tuned"):
        load_tuned_lens(path, fingerprint(theirs), ckpt)
    with pytest.raises(TunedLensError, match="no tuned lens.*--train-tuned"):
        load_tuned_lens(tmp_path / "missing.pt", fingerprint(ours), ckpt)
    path.write_bytes(b"not a torch file")
    with pytest.raises(TunedLensError, match="cannot read"):
        load_tuned_lens(path, fingerprint(ours), ckpt)


def test_fingerprint_follows_every_weight():
    model = tiny_lm(14)
    fp = fingerprint(model)
    assert fingerprint(tiny_lm(14)) == fp
    with torch.no_grad():
        model.transformer.h[0].ln_1.weight[3] += 1e-6
    assert fingerprint(model) != fp
