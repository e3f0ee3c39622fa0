"""Inference telemetry on real models: numbers checked by hand, planted faults raising
exactly their flag at the right layer and step, and sampled Shakespeare raising none.

The toy model is a character-level GPT (4 blocks) trained here for a few hundred steps on
the Shakespeare example's text, so that it is confident enough for the default entropy
threshold and has real (not random) residual streams.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from llmkit.inspect.health import FAULT_CODES, Thresholds, assess
from llmkit.inspect.numerics import NonFinite, attention_entropy, cosine, norm
from llmkit.inspect.telemetry import Sampling, inspect_generation, reduce_pass, to_report
from llmkit.models import CausalLM, GPTConfig
from llmkit.models.gpt import TrunkOutput

EXAMPLE = Path(__file__).parents[2] / "examples" / "shakespeare" / "data"
EOS = 2


class Toy:
    """A trained character model and its alphabet (ids 0-2 are the specials)."""

    def __init__(self) -> None:
        files = sorted(p for p in EXAMPLE.glob("*.txt"))
        assert files, f"the Shakespeare example's text is missing from {EXAMPLE}"
        self.text = files[0].read_text(encoding="utf-8")[:300_000]
        chars = sorted(set(self.text))
        self.stoi = {c: i + 3 for i, c in enumerate(chars)}
        self.itos = {i: c for c, i in self.stoi.items()} | {0: "<pad>", 1: "<bos>", 2: "<eos>"}
        data = torch.tensor([self.stoi[c] for c in self.text])
        torch.manual_seed(0)
        self.model = CausalLM(GPTConfig(vocab_size=len(chars) + 3, n_layer=4, n_head=2,
                                        n_embd=32, block_size=64))
        opt = torch.optim.AdamW(self.model.parameters(), lr=1e-2)
        g = torch.Generator().manual_seed(0)
        for _ in range(300):
            starts = torch.randint(0, len(data) - 65, (16,), generator=g)
            rows = torch.stack([data[s:s + 65] for s in starts.tolist()])
            _, loss = self.model(rows[:, :-1], rows[:, 1:])
            opt.zero_grad()
            loss.backward()
            opt.step()
        self.loss = loss.item()
        self.model.eval()

    def ids(self, prompt: str) -> list[int]:
        return [EOS, *(self.stoi[c] for c in prompt)]

    def run(self, prompt: str, *, seed: int = 0, th: Thresholds = Thresholds(),
            **sampling):
        gen = inspect_generation(self.model, self.ids(prompt), Sampling(**sampling),
                                 generator=torch.Generator().manual_seed(seed), eos_id=EOS)
        nf = NonFinite()
        _, steps = to_report(gen, self.itos.__getitem__, nf)
        flags = assess(steps, th, n_layer=4, vocab_size=self.model.config.vocab_size)
        return gen, steps, flags, nf


@pytest.fixture(scope="module")
def toy() -> Toy:
    return Toy()


def codes(flags) -> set[str]:
    return {f.code for f in flags}


# --------------------------------------------------------------------------------------
# Numbers by hand
# --------------------------------------------------------------------------------------


def test_a_uniform_next_token_distribution_has_entropy_log2_v():
    torch.manual_seed(0)
    model = CausalLM(GPTConfig(vocab_size=50, n_layer=2, n_head=2, n_embd=16, block_size=16))
    with torch.no_grad():
        model.lm_head.weight.zero_()  # tied: every logit is 0 -> uniform over 50 tokens
    gen = inspect_generation(model, [EOS, 5, 6], Sampling(max_new_tokens=3),
                             generator=torch.Generator().manual_seed(0))
    _, steps = to_report(gen, str, NonFinite())
    for s in steps:
        assert s["entropy_bits"] == pytest.approx(math.log2(50), abs=1e-5)
        assert s["entropy_share"] == pytest.approx(1.0, abs=1e-6)
        assert s["surprisal_bits"] == pytest.approx(math.log2(50), abs=1e-5)


def test_uniform_causal_attention_has_normalised_entropy_one_on_every_row():
    T = 7
    allowed = torch.ones(T, T).tril()
    att = allowed / allowed.sum(dim=-1, keepdim=True)  # row t: 1 / (t + 1) on keys 0..t
    ent = attention_entropy(att.expand(2, 3, T, T))
    assert math.isnan(ent[0, 0, 0])  # one key: nothing to spread over (null in reports)
    assert torch.allclose(ent[..., 1:], torch.ones(2, 3, T - 1), atol=1e-6)
    # divided by log(t + 1), not log(T): the same rows over log(T) would read far below 1
    assert (ent[0, 0, 1:-1] * torch.arange(2, T).log() / math.log(T) < 0.99).all()
    # queries 4..6 of a cached window see 5..7 keys
    assert torch.allclose(attention_entropy(att[4:], first_query=4), torch.ones(3),
                          atol=1e-6)
    one_hot = torch.zeros(1, 5)
    one_hot[0, 2] = 1.0
    assert attention_entropy(one_hot, first_query=4).item() == 0.0


def test_uniform_attention_in_a_model_reads_one_with_its_largest_and_sink_weights():
    torch.manual_seed(0)
    model = CausalLM(GPTConfig(vocab_size=40, n_layer=2, n_head=2, n_embd=16, block_size=16))
    with torch.no_grad():
        for block in model.transformer.h:  # queries and keys 0: every score ties
            block.attn.c_attn.weight[:32].zero_()
    gen = inspect_generation(model, [EOS, 7, 8, 9], Sampling(max_new_tokens=4),
                             generator=torch.Generator().manual_seed(1))
    _, steps = to_report(gen, str, NonFinite())
    for s in steps:
        keys = 4 + s["step"]  # the row of step s sees the prompt and s generated tokens
        for grid, want in ((s["heads"]["entropy"], 1.0), (s["heads"]["max_weight"], 1 / keys),
                           (s["heads"]["sink"], 1 / keys)):
            assert grid == [[pytest.approx(want, abs=1e-5)] * 2] * 2


def test_surprisal_is_minus_log2_p_of_the_chosen_token(toy):
    gen, steps, _, _ = toy.run("ROMEO:", seed=5, max_new_tokens=12)
    full = torch.tensor([gen.ids + gen.tokens])
    with torch.no_grad():  # an independent, uncached forward pass in float64
        logits, _ = toy.model(full, all_logits=True)
        logp = F.log_softmax(logits.double(), dim=-1)[0]
    for s, tok in enumerate(gen.tokens):
        pos = len(gen.ids) - 1 + s  # the position that predicts generated token s
        want = -logp[pos, tok].item() / math.log(2)
        assert steps[s]["surprisal_bits"] == pytest.approx(want, abs=1e-4)
        assert steps[s]["entropy_bits"] == pytest.approx(
            -(logp[pos].exp() * logp[pos]).sum().item() / math.log(2), abs=1e-4)
        assert steps[s]["top"][0]["id"] == int(logp[pos].argmax())


def test_cosine_and_l2_of_large_float16_vectors_are_right():
    a = torch.full((4096,), 100.0, dtype=torch.float16)  # sum of squares 4.1e7 > fp16 max
    b = a.clone()
    b[:2048] = -100.0
    assert (a * a).sum().isinf()  # what a float16 reduction would give
    assert norm(a).item() == pytest.approx(6400.0)
    assert cosine(a, a).item() == pytest.approx(1.0, abs=1e-6)
    assert cosine(a, b).item() == pytest.approx(0.0, abs=1e-6)
    # the per-step reduction of a float16 model's states: float32 L2 and cosine
    hidden = [(a * (i + 1)).view(1, 1, -1) for i in range(3)]  # (B, T, C) per layer
    out = TrunkOutput(x=hidden[-1], hidden=hidden, attn=None)
    step = reduce_pass(out, torch.zeros(1, 10, dtype=torch.float16), 0, 3)
    assert step["emb_l2"].item() == pytest.approx(6400.0)
    assert step["l2"].tolist() == pytest.approx([12800.0, 19200.0])
    assert step["block_cos"].tolist() == pytest.approx([1.0, 1.0], abs=1e-6)
    assert step["entropy_bits"].item() == pytest.approx(math.log2(10), abs=1e-4)


def test_a_float16_model_gives_float32_numbers(toy):
    model = CausalLM(toy.model.config)
    model.load_state_dict(toy.model.state_dict())
    model.half()
    with torch.no_grad():  # a big residual stream: fp16 sums of squares would overflow
        model.transformer.wte.weight.mul_(400.0)
    gen = inspect_generation(model, toy.ids("KING:"), Sampling(max_new_tokens=2),
                             generator=torch.Generator().manual_seed(0))
    _, steps = to_report(gen, str, NonFinite())
    x = model.transformer.wte.weight[gen.ids[-1]] + model.transformer.wpe.weight[len(gen.ids)
                                                                               - 1]
    assert steps[0]["emb_l2"] == pytest.approx(x.double().norm().item(), rel=1e-3)
    assert all(v is not None and math.isfinite(v) for v in steps[0]["l2"])


# --------------------------------------------------------------------------------------
# Planted faults
# --------------------------------------------------------------------------------------


def _plant(model: CausalLM, layer: int, fn):
    return model.transformer.h[layer].register_forward_hook(lambda m, i, out: fn(out))


def test_the_toy_model_is_trained(toy):
    assert toy.loss < 2.8  # nats per character: well below uniform (log 68 = 4.2)


def test_nan_in_block_1_raises_nonfinite_naming_layer_1(toy):
    handle = _plant(toy.model, 1, lambda out: out * float("nan"))
    try:
        gen, steps, flags, nf = toy.run("ROMEO:", max_new_tokens=10)
    finally:
        handle.remove()
    assert codes(flags) & set(FAULT_CODES) == {"nonfinite"}
    flag = next(f for f in flags if f.code == "nonfinite")
    assert flag.where == {"step": 0, "layer": 1, "name": "h1"}
    assert gen.stopped == "nonfinite" and len(steps) == 1 and gen.tokens == []
    assert steps[0]["emb_nonfinite"] == 0 and steps[0]["nonfinite"][0] == 0
    assert steps[0]["nonfinite"][1] == 7 * 32  # every value of the prompt pass
    assert steps[0]["entropy_bits"] is None  # never 0 bits
    assert any(e["where"] == "steps[0].entropy_bits" for e in nf.entries)


def test_a_middle_layer_times_100_raises_the_mid_layer_l2_flag(toy):
    handle = _plant(toy.model, 2, lambda out: out * 100.0)
    try:
        _, steps, flags, _ = toy.run("ROMEO:", seed=1, max_new_tokens=16)
    finally:
        handle.remove()
    assert codes(flags) & set(FAULT_CODES) == {"mid_layer_l2"}
    flag = next(f for f in flags if f.code == "mid_layer_l2")
    assert flag.where == {"step": 0, "layer": 2, "name": "h2"}
    assert flag.numbers["ratio"] > 20 and flag.steps == list(range(len(steps)))


def test_identical_states_with_repeated_tokens_raise_the_repetition_loop(toy):
    fixed = {}

    def freeze(out):  # every position gets the same last-block output
        fixed.setdefault("state", out[0, -1].detach().clone())
        return fixed["state"].expand_as(out)
    handle = _plant(toy.model, 3, freeze)
    try:
        gen, steps, flags, _ = toy.run("ROMEO:", max_new_tokens=12, temperature=0.0)
    finally:
        handle.remove()
    assert len(set(gen.tokens)) == 1  # greedy on identical states: one token over and over
    assert codes(flags) & set(FAULT_CODES) == {"repetition_loop"}
    flag = next(f for f in flags if f.code == "repetition_loop")
    assert flag.numbers["period"] == 1 and flag.where["step"] == 0
    assert flag.numbers["max_distance"] == 0.0


def test_repeated_tokens_alone_are_not_a_loop(toy):
    th = Thresholds(loop_distance=1e-9)  # states must be identical: real ones never are
    handle = _plant(toy.model, 3, lambda out: out)
    try:
        _, _, flags, _ = toy.run("ROMEO:", max_new_tokens=12, temperature=0.0, th=th)
    finally:
        handle.remove()
    assert "repetition_loop" not in codes(flags)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_sampled_shakespeare_raises_no_fault(toy, seed):
    g = torch.Generator().manual_seed(seed)
    start = int(torch.randint(0, len(toy.text) - 40, (1,), generator=g))
    prompt = toy.text[start:start + 30]
    _, steps, flags, nf = toy.run(prompt, seed=seed, max_new_tokens=30)
    assert codes(flags) & set(FAULT_CODES) == set(), [f.message for f in flags]
    assert len(steps) == 30 and len(nf) == 0


def test_no_attention_measures_everything_but_the_heads(toy):
    _, with_attn, _, _ = toy.run("KING:", seed=4, max_new_tokens=6)
    _, without, flags, _ = toy.run("KING:", seed=4, max_new_tokens=6, attention=False)
    assert [s["token"] for s in without] == [s["token"] for s in with_attn]
    assert all(s["heads"] is None for s in without)
    assert "attention_collapse" not in codes(flags)
    for a, b in zip(with_attn, without, strict=True):
        assert b["l2"] == pytest.approx(a["l2"], rel=1e-4)
