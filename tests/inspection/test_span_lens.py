"""The span lens: each layer decoded like the model, the last layer is the model."""

from __future__ import annotations

import torch

from llmkit.inspect.span_lens import settled_layer, span_lens_run
from llmkit.models import GPTConfig, SpanModel, decode_spans

TEXT = "the gold crown"
# [BOS] the ␣gold ␣crown [EOS], as a span window lays a text out (character offsets)
IDS = [1, 5, 6, 7, 2]
OFFSETS = [(0, 0), (0, 3), (3, 8), (8, 14), (14, 14)]


def span_model(seed: int) -> SpanModel:
    torch.manual_seed(seed)
    return SpanModel(GPTConfig(vocab_size=10, n_layer=2, n_head=2, n_embd=16, block_size=16,
                               causal=False)).eval()


def test_last_layer_is_the_models_prediction_and_every_layer_is_reported():
    for seed in range(5):
        model = span_model(seed)
        run = span_lens_run(model, IDS, OFFSETS, TEXT, max_span_tokens=3,
                            nospan_threshold=-1e9, gold=(4, 8), token_text=str)
        assert [layer["layer"] for layer in run["layers"]] == [0, 1, 2]
        x = torch.tensor([IDS])
        mask = torch.ones_like(x, dtype=torch.bool)
        with torch.no_grad():
            s, e, _ = decode_spans(*model(x, mask), mask, 3, -1e9)
        last = run["layers"][-1]
        assert last["token_span"] == [int(s[0]), int(e[0])]
        assert last["iou_final"] == 1.0
        assert TEXT[slice(*last["span"])] == last["span_text"]
        for layer in run["layers"]:
            assert len(layer["start_prob"]) == len(IDS)
            assert abs(sum(layer["start_prob"]) - 1.0) < 1e-5
            ts, te = layer["token_span"]
            assert 1 <= ts < te <= 4  # never BOS or EOS with this threshold
            assert 0.0 <= layer["iou_gold"] <= 1.0
        assert run["nonfinite"] == []


def test_layers_are_decoded_from_their_own_states():
    model = span_model(0)
    with torch.no_grad():
        model.span_head.weight.zero_()
        model.span_head.weight[0, 0] = 50.0  # start where channel 0 is large
        model.span_head.weight[1, 0] = 50.0  # ... and end there too: a one-token span
    hooks = []

    def plant(pos: int):
        def hook(module, args, out):
            x = torch.zeros_like(out)
            x[0, pos, 0] = 10.0
            x[0, :, 1] = torch.arange(out.size(1), dtype=out.dtype)  # keeps the norm sane
            return x
        return hook
    hooks.append(model.transformer.drop.register_forward_hook(plant(1)))
    hooks.append(model.transformer.h[0].register_forward_hook(plant(2)))
    hooks.append(model.transformer.h[1].register_forward_hook(plant(3)))
    run = span_lens_run(model, IDS, OFFSETS, TEXT, max_span_tokens=3, nospan_threshold=0.0,
                        gold=(9, 14), token_text=str)
    assert [layer["token_span"] for layer in run["layers"]] == [[1, 2], [2, 3], [3, 4]]
    assert [layer["span_text"] for layer in run["layers"]] == ["the", " gold", " crown"]
    assert [layer["iou_final"] for layer in run["layers"]] == [0.0, 0.0, 1.0]
    assert run["layers"][2]["iou_gold"] == 5 / 6
    assert run["summary"]["first_final_layer"] == 2
    for h in hooks:
        h.remove()


def test_settled_layer():
    assert settled_layer([False, True, False, True, True]) == 3
    assert settled_layer([True, True]) == 0
    assert settled_layer([True, False]) is None
