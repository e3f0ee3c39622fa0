"""The optimizer named by the config (AdamW, or Muon + AdamW), and honest FLOP counting:
the tied head's matmul and attention counted, the device peak for the dtype in use."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from llmkit.config import TrainingConfig
from llmkit.models import CausalLM, GPTConfig
from llmkit.precision import matmul_dtype
from llmkit.trainer.build import flops_per_token
from llmkit.trainer.callbacks import throughput
from llmkit.trainer.callbacks.throughput import peak_flops
from llmkit.trainer.optim import (
    MuonAdamW,
    build_optimizer,
    newton_schulz_dtype,
    orthogonalize,
)

GPT = GPTConfig(vocab_size=65, n_layer=2, n_head=2, n_embd=16, block_size=8)


def training(**kw) -> TrainingConfig:
    base = {"lr": 1e-2, "weight_decay": 0.1, "batch_size": 2, "optimizer": "adamw",
            "betas": [0.9, 0.99], "max_steps": 10, "warmup_steps": 0}
    return TrainingConfig(**{**base, **kw})


def _steps(model: CausalLM, optimizer: torch.optim.Optimizer, n: int) -> list[float]:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 65, (4, 8), generator=g)
    losses = []
    for _ in range(n):
        _, loss = model(x, x.roll(-1, dims=1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return losses


def test_adamw_takes_the_configured_betas():
    optimizer, _ = build_optimizer(CausalLM(GPT), training(betas=[0.8, 0.9]))
    assert isinstance(optimizer, torch.optim.AdamW)
    assert all(g["betas"] == (0.8, 0.9) for g in optimizer.param_groups)


def test_muon_updates_hidden_matrices_and_adamw_the_rest():
    torch.manual_seed(0)
    model = CausalLM(dataclasses.replace(GPT, arch="llama"))
    optimizer, _ = build_optimizer(model, training(optimizer="muon"))
    assert isinstance(optimizer, MuonAdamW)
    losses = _steps(model, optimizer, 8)
    assert losses[-1] < losses[0] * 0.8
    hidden = {id(p) for g in optimizer.param_groups if g["hidden"] for p in g["params"]}
    for name, p in model.named_parameters():
        state = optimizer.state[p]
        # Muon keeps one momentum buffer; AdamW its two moments
        assert ("momentum_buffer" in state) == (id(p) in hidden), name
        assert ("exp_avg_sq" in state) == (id(p) not in hidden), name


def test_muon_state_round_trips_exactly():
    torch.manual_seed(0)
    a = CausalLM(GPT)
    b = CausalLM(GPT)
    b.load_state_dict(a.state_dict())
    opt_a, _ = build_optimizer(a, training(optimizer="muon"))
    _steps(a, opt_a, 3)
    opt_b, _ = build_optimizer(b, training(optimizer="muon"))
    b.load_state_dict(a.state_dict())
    opt_b.load_state_dict(copy.deepcopy(opt_a.state_dict()))  # as a checkpoint would
    assert _steps(a, opt_a, 3) == _steps(b, opt_b, 3)


def test_orthogonalize_flattens_the_singular_values():
    g = torch.randn(48, 16) @ torch.diag(torch.logspace(-1, 1, 16))  # singular values spread
    for dtype in (torch.float32, torch.bfloat16):
        s = torch.linalg.svdvals(orthogonalize(g, dtype=dtype).float())
        assert s.min() > 0.5 and s.max() < 1.3, dtype  # Newton-Schulz pushes them near 1
    assert orthogonalize(g).shape == g.shape
    assert orthogonalize(g).dtype == newton_schulz_dtype(g.device)


def test_orthogonalize_of_a_stack_is_each_matrix_alone():
    torch.manual_seed(0)
    for shape in ((5, 24, 16), (3, 16, 40)):  # tall and wide
        g = torch.randn(shape) * torch.logspace(-2, 1, shape[0])[:, None, None]  # scales differ
        together = orthogonalize(g, dtype=torch.float32)
        alone = torch.stack([orthogonalize(m, dtype=torch.float32) for m in g])
        torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-5)


def test_flops_count_the_tied_head_and_attention():
    # Hand count for GPT: per block 4 C^2 (attention) + 8 C^2 (MLP) weights in matmuls,
    # the tied head C * V, and attention's 12 * L * C * T.
    C, L, V, T = 16, 2, 65, 8
    matmul = L * 12 * C * C + C * V
    assert flops_per_token(GPT) == 6 * matmul + 12 * L * C * T
    untied = dataclasses.replace(GPT, tie_embeddings=False)
    assert flops_per_token(untied) == flops_per_token(GPT)  # the same matmuls either way
    # llama's SwiGLU: three (C x 8C/3 rounded up to 32) matrices instead of two 4C ones
    llama = dataclasses.replace(GPT, arch="llama")
    assert flops_per_token(llama) == 6 * (L * (4 * C * C + 3 * C * 64) + C * V) + 12 * L * C * T


def test_peak_flops_by_dtype_with_a_fallback(monkeypatch: pytest.MonkeyPatch):
    assert peak_flops(torch.device("cpu"), torch.bfloat16) is None  # measured in benchmarks
    assert matmul_dtype("bf16-mixed") == torch.bfloat16
    assert matmul_dtype("16-mixed") == torch.float16
    assert matmul_dtype("32-true") == torch.float32
    cuda = torch.device("cuda", 0)
    monkeypatch.setattr(throughput, "get_available_flops", lambda device, dtype: 756e12)
    assert peak_flops(cuda, torch.bfloat16) == 756e12  # Lightning's table first
    monkeypatch.setattr(throughput, "get_available_flops", lambda device, dtype: None)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H200")
    assert peak_flops(cuda, torch.bfloat16) == 989.4e12  # then ours
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Some GPU")
    assert peak_flops(cuda, torch.bfloat16) is None  # unknown: no MFU rather than a guess
