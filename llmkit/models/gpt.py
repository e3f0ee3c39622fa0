"""The GPT trunk (causal or bidirectional) and the causal language model on top of it.

Reads top to bottom: config, the key/value cache of generation, the two norms and rotary
positions, attention, MLP, block, trunk (`GPT`), language model (`CausalLM`) and its
sampler (`sample_next`), then two helpers the trainer needs (`param_counts`,
`configure_optimizer_groups`). Plain `nn.Module`s: no Lightning in here. Training never
passes a cache: its path is the one without it.

Architectures: `gpt2` (learned positions, LayerNorm, GELU MLP) is today's GPT-2; `llama`
(rotary positions, RMSNorm, SwiGLU MLP) computes what transformers' Llama computes, and
`qwen3` is `llama` plus an RMSNorm on each head's queries and keys (QK-norm). Any of them
may tie the head to the token embedding or not. Options are offered only in these
combinations, because each must be a model `transformers` loads with identical logits.

Shape letters: B batch, T time (sequence length), C channels (n_embd), V vocabulary,
nh heads, hs head size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn as nn
from torch.nn import functional as F


@dataclass(frozen=True)
class GPTConfig:
    """The shape of a GPT model. `vocab_size` is the tokenizer's real size, never a guess."""

    vocab_size: int  # real number of tokens (specials included); logits have this many
    n_layer: int  # number of transformer blocks
    n_head: int  # attention heads per block
    n_embd: int  # width of the residual stream
    block_size: int  # longest sequence the position embedding covers
    dropout: float = 0.0  # on attention weights, residual branches and embeddings
    bias: bool = False  # biases in Linear and LayerNorm layers
    causal: bool = True  # False: bidirectional attention (span models)
    pad_vocab_multiple: int = 1  # round embedding rows up to a multiple of this (64 on GPU)
    arch: str = "gpt2"  # gpt2 | llama | qwen3: which options below are on (ARCHES)
    tie_embeddings: bool = True  # the LM head reuses the token embedding matrix

    def __post_init__(self) -> None:
        problems = []
        for name in ("vocab_size", "n_layer", "n_head", "n_embd", "block_size",
                     "pad_vocab_multiple"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                problems.append(f"{name} must be a positive integer, got {value!r}")
        if not 0.0 <= self.dropout < 1.0:
            problems.append(f"dropout must be in [0, 1), got {self.dropout!r}")
        if self.arch not in ARCHES:
            problems.append(f"arch must be one of {', '.join(ARCHES)}, got {self.arch!r}")
        elif self.arch != "gpt2" and self.bias:
            problems.append(f"arch {self.arch} has no biases (RMSNorm has none); set bias=False")
        if not problems and self.n_embd % self.n_head != 0:
            problems.append(
                f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})"
            )
        if problems:
            raise ValueError("invalid GPTConfig: " + "; ".join(problems))

    @property
    def padded_vocab_size(self) -> int:
        """Rows of the token embedding: vocab_size rounded up to pad_vocab_multiple."""
        m = self.pad_vocab_multiple
        return (self.vocab_size + m - 1) // m * m

    @property
    def rope(self) -> bool:
        """Rotary position embeddings in attention instead of a learned position table."""
        return self.arch != "gpt2"

    @property
    def qk_norm(self) -> bool:
        """RMSNorm over each head's queries and keys, before the rotation (Qwen3)."""
        return self.arch == "qwen3"

    @property
    def head_size(self) -> int:
        return self.n_embd // self.n_head

    @property
    def mlp_hidden(self) -> int:
        """Width of the MLP's hidden layer.

        GELU: 4 x n_embd (GPT-2). SwiGLU has three matrices instead of two, so it gets
        about 2/3 of that (8/3 x n_embd, as in Llama), rounded up to a multiple of 32:
        the same parameter count, give or take the rounding.
        """
        if self.arch == "gpt2":
            return 4 * self.n_embd
        return (8 * self.n_embd // 3 + 31) // 32 * 32


ARCHES = ("gpt2", "llama", "qwen3")  # the option combinations that transformers loads
ROPE_THETA = 10000.0  # base of the rotary frequencies (Llama 2's rope_theta)
RMS_NORM_EPS = 1e-6  # Llama's and Qwen3's rms_norm_eps


class RMSNorm(nn.Module):
    """x / sqrt(mean(x^2) + eps) * weight, computed in float32 (as Llama does), no bias."""

    def __init__(self, dim: int, eps: float = RMS_NORM_EPS) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)


def make_norm(cfg: GPTConfig, dim: int) -> nn.Module:
    """The architecture's normalisation layer over the last `dim` channels."""
    if cfg.arch == "gpt2":
        return nn.LayerNorm(dim, bias=cfg.bias)
    return RMSNorm(dim)


def rotary_tables(head_size: int, n_pos: int, theta: float = ROPE_THETA
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin (n_pos, head_size) of the rotary embedding, in float32.

    Channel pair (i, i + hs/2) of position p is rotated by the angle p * theta^(-2i/hs):
    the "rotate half" layout of Llama in transformers (not GPT-J's interleaved pairs).
    """
    inv_freq = 1.0 / theta ** (torch.arange(0, head_size, 2, dtype=torch.float32) / head_size)
    angles = torch.outer(torch.arange(n_pos, dtype=torch.float32), inv_freq)  # (n_pos, hs/2)
    angles = torch.cat((angles, angles), dim=-1)  # (n_pos, hs)
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate queries or keys x (B, nh, T, hs) by the angles of their positions (T, hs)."""
    half = x.size(-1) // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)  # rotate_half(x)
    return x * cos.to(x.dtype) + rotated * sin.to(x.dtype)


class KVCache:
    """The keys and values of every token seen so far, per layer, for fast generation.

    Without a cache each new token re-runs the whole sequence; with one, the model runs on
    the new tokens only and attends to the stored keys and values. Buffers of
    (B, nh, block_size, hs) are allocated by each layer on first use, in the dtype its keys
    come in (bf16 under autocast). `pos` counts the tokens stored; `GPT` advances it after
    all layers have written. Learned positions cannot slide, so a full cache must be
    `reset` and refilled with the last `block_size` tokens (what the uncached path sees).
    """

    def __init__(self, n_layer: int, block_size: int) -> None:
        self.block_size = block_size
        self.pos = 0
        self.k: list[torch.Tensor | None] = [None] * n_layer
        self.v: list[torch.Tensor | None] = [None] * n_layer

    def reset(self) -> None:
        """Forget every token (the buffers are kept and overwritten)."""
        self.pos = 0

    def update(
        self, layer: int, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Store layer `layer`'s new keys and values (B, nh, T, hs) at positions pos..pos+T;
        return all of that layer's keys and values so far, (B, nh, pos + T, hs) each."""
        B, nh, T, hs = k.shape
        if self.k[layer] is None:
            self.k[layer] = k.new_zeros(B, nh, self.block_size, hs)
            self.v[layer] = v.new_zeros(B, nh, self.block_size, hs)
        ks, vs = self.k[layer], self.v[layer]
        assert ks is not None and vs is not None
        end = self.pos + T
        ks[:, :, self.pos : end] = k
        vs[:, :, self.pos : end] = v
        return ks[:, :, :end], vs[:, :, :end]


class SelfAttention(nn.Module):
    """Multi-head self-attention, causal or bidirectional, through PyTorch's SDPA kernels."""

    def __init__(self, cfg: GPTConfig, layer: int = 0) -> None:
        super().__init__()
        self.layer = layer  # which of the cache's slots is ours
        self.n_head = cfg.n_head
        self.n_embd = cfg.n_embd
        self.causal = cfg.causal
        self.dropout = cfg.dropout
        # query, key and value projections for all heads in one matmul
        self.c_attn = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=cfg.bias)
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.attn_dropout = nn.Dropout(cfg.dropout)  # only used on the explicit path
        self.resid_dropout = nn.Dropout(cfg.dropout)
        # QK-norm (qwen3): one RMSNorm over the head size, shared by all heads
        self.q_norm = RMSNorm(cfg.head_size) if cfg.qk_norm else None
        self.k_norm = RMSNorm(cfg.head_size) if cfg.qk_norm else None

    def forward(
        self,
        x: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
        weights_out: list[torch.Tensor] | None = None,
        rotary: tuple[torch.Tensor, torch.Tensor] | None = None,
        cache: KVCache | None = None,
    ) -> torch.Tensor:
        """Attend; `attn_mask` is a bool (B, 1, T, T) or (B, 1, 1, T), True = may attend.

        Returns the output (B, T, C). When a list `weights_out` is given, the attention
        weights (B, nh, T, T) are appended to it; that takes the explicit path instead of
        SDPA, which never materialises them. `rotary` is the (cos, sin) of the T positions
        (T, hs) when the architecture rotates queries and keys. With a `cache` the queries
        attend to the cached keys too (then `attn_mask` is (1, 1, T, pos + T), made by
        `GPT`); keys are cached after their rotation.
        """
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        hs = C // self.n_head
        q = q.view(B, T, self.n_head, hs)  # (B, T, nh, hs)
        k = k.view(B, T, self.n_head, hs)  # (B, T, nh, hs)
        if self.q_norm is not None and self.k_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)  # per head, before the rotation (Qwen3)
        q = q.transpose(1, 2)  # (B, nh, T, hs)
        k = k.transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, hs).transpose(1, 2)  # (B, nh, T, hs)
        if rotary is not None:
            q, k = apply_rotary(q, *rotary), apply_rotary(k, *rotary)
        if cache is not None:
            k, v = cache.update(self.layer, k, v)  # (B, nh, pos + T, hs)

        if weights_out is not None:
            # The slow, explicit path: inspection tools that want to see the weights pay
            # for the (T, T) matrix here instead.
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))  # (B, nh, T, T)
            if attn_mask is not None:
                att = att.masked_fill(~attn_mask, float("-inf"))
            elif self.causal and T == k.size(-2):  # else one new token: it sees every key
                allowed = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
                att = att.masked_fill(~allowed, float("-inf"))
            att = F.softmax(att, dim=-1)
            weights_out.append(att)
            y = self.attn_dropout(att) @ v  # (B, nh, T, hs)
        else:
            y = F.scaled_dot_product_attention(
                q, k, v,
                attn_mask=attn_mask,
                dropout_p=self.dropout if self.training else 0.0,
                # with an explicit mask the causal part is already folded into it; one new
                # token after a cache (T == 1 < keys) may see every key
                is_causal=self.causal and attn_mask is None and T == k.size(-2),
            )  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # re-assemble the heads: (B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    """Position-wise feed-forward: expand 4x, GELU, project back."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(cfg.n_embd, cfg.mlp_hidden, bias=cfg.bias)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(cfg.mlp_hidden, cfg.n_embd, bias=cfg.bias)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))  # (B, T, C)


class SwiGLU(nn.Module):
    """Gated feed-forward (Llama): c_proj(silu(c_gate(x)) * c_fc(x))."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.c_gate = nn.Linear(cfg.n_embd, cfg.mlp_hidden, bias=False)
        self.c_fc = nn.Linear(cfg.n_embd, cfg.mlp_hidden, bias=False)
        self.c_proj = nn.Linear(cfg.mlp_hidden, cfg.n_embd, bias=False)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(F.silu(self.c_gate(x)) * self.c_fc(x)))  # (B, T, C)


class Block(nn.Module):
    """One pre-norm transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, cfg: GPTConfig, layer: int = 0) -> None:
        super().__init__()
        self.ln_1 = make_norm(cfg, cfg.n_embd)
        self.attn = SelfAttention(cfg, layer)
        self.ln_2 = make_norm(cfg, cfg.n_embd)
        self.mlp = MLP(cfg) if cfg.arch == "gpt2" else SwiGLU(cfg)

    def forward(
        self,
        x: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
        weights_out: list[torch.Tensor] | None = None,
        rotary: tuple[torch.Tensor, torch.Tensor] | None = None,
        cache: KVCache | None = None,
    ) -> torch.Tensor:
        """(B, T, C) -> (B, T, C). `weights_out` collects the attention weights, `rotary`
        holds the positions' rotations, `cache` generation's keys and values (see
        `SelfAttention`); the output is a tensor on every path, so a forward hook on a
        block sees the same thing in training, in generation and in inspection."""
        x = x + self.attn(self.ln_1(x), attn_mask, weights_out, rotary, cache)
        x = x + self.mlp(self.ln_2(x))
        return x


class TrunkOutput(NamedTuple):
    """What `GPT.inspect` hands back for per-layer tools."""

    x: torch.Tensor  # (B, T, C): the final hidden states, after ln_f
    hidden: list[torch.Tensor]  # n_layer + 1 tensors (B, T, C): the embedding output, then
    # each block's output, all before ln_f (the residual stream)
    attn: list[torch.Tensor] | None  # n_layer tensors (B, nh, T, T) when asked for, else None


class GPT(nn.Module):
    """The trunk: token (+ learned position) embeddings, `n_layer` blocks, final norm.

    Heads live elsewhere (`CausalLM`, `SpanModel`); they read the (B, T, C) output.
    The blocks are an `nn.ModuleList` named `h`, so hooks can address `h.3`.
    """

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.config = cfg
        self.wte = nn.Embedding(cfg.padded_vocab_size, cfg.n_embd)
        # learned positions (gpt2), or rotations of queries and keys (llama, qwen3)
        self.wpe = None if cfg.rope else nn.Embedding(cfg.block_size, cfg.n_embd)
        if cfg.rope:
            cos, sin = rotary_tables(cfg.head_size, cfg.block_size)
            # not in the state dict: computed, never learned
            self.register_buffer("rope_cos", cos, persistent=False)  # (block_size, hs)
            self.register_buffer("rope_sin", sin, persistent=False)  # (block_size, hs)
        self.drop = nn.Dropout(cfg.dropout)
        self.h = nn.ModuleList([Block(cfg, i) for i in range(cfg.n_layer)])
        self.ln_f = make_norm(cfg, cfg.n_embd)
        self.apply(init_weights)
        # Each residual branch adds to the stream 2 * n_layer times in total; scaling its
        # output projection keeps the stream's variance from growing with depth (GPT-2).
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))

    def forward(
        self,
        idx: torch.Tensor,
        mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
    ) -> torch.Tensor:
        """Run the trunk on token ids `idx` (B, T); the final hidden states (B, T, C).

        Args:
            idx: int64 token ids (B, T), every id < `config.vocab_size` (checked upstream).
            mask: optional bool (B, T), True = real token, False = padding. Padding is
                hidden from every query as a key. Outputs at padded positions are
                meaningless; heads must ignore them.
            cache: generation only (causal, no `mask`): `idx` are the tokens that follow
                the `cache.pos` tokens already in the cache, which then holds them too.
        """
        return self._run(idx, mask, None, None, cache)

    def inspect(
        self,
        idx: torch.Tensor,
        mask: torch.Tensor | None = None,
        *,
        attn: bool = False,
        cache: KVCache | None = None,
    ) -> TrunkOutput:
        """The forward pass with what per-layer tools need: every layer's residual stream
        and, with `attn`, every block's attention weights (a slower explicit path).

        With a `cache` (generation, as in `forward`) the states are those of the new
        tokens only and the weights are (B, nh, T, cache.pos + T): the new queries over
        every key so far. Not for training: it keeps n_layer + 1 activations alive.
        Callers reduce them at once and drop them.
        """
        hidden: list[torch.Tensor] = []
        weights: list[torch.Tensor] | None = [] if attn else None
        x = self._run(idx, mask, hidden, weights, cache)
        return TrunkOutput(x=x, hidden=hidden, attn=weights)

    def _run(
        self,
        idx: torch.Tensor,
        mask: torch.Tensor | None,
        hidden: list[torch.Tensor] | None,
        weights: list[torch.Tensor] | None,
        cache: KVCache | None = None,
    ) -> torch.Tensor:
        B, T = idx.size()
        start = cache.pos if cache is not None else 0  # tokens before idx[:, 0]
        if start + T > self.config.block_size:
            raise ValueError(
                f"sequence length {start + T} is longer than the model's block_size "
                f"{self.config.block_size}; crop the input to the last "
                f"{self.config.block_size} tokens or train with a larger block_size"
            )
        if cache is not None:
            if mask is not None or not self.config.causal:
                raise ValueError("a KVCache is for causal generation without a padding mask")
            attn_mask = self._cached_attn_mask(start, T, idx.device)
        else:
            attn_mask = self._attn_mask(mask, B, T) if mask is not None else None

        x = self.wte(idx)  # (B, T, C)
        rotary = None
        if self.wpe is not None:
            pos = torch.arange(start, start + T, dtype=torch.long, device=idx.device)  # (T,)
            x = x + self.wpe(pos)
        else:  # the positions start..start+T-1 (after the cached tokens)
            rotary = (self.rope_cos[start : start + T], self.rope_sin[start : start + T])
        x = self.drop(x)
        if hidden is not None:
            hidden.append(x)
        for block in self.h:
            x = block(x, attn_mask, weights, rotary, cache)
            if hidden is not None:
                hidden.append(x)
        if cache is not None:
            cache.pos += T  # every layer has stored this step's keys and values
        return self.ln_f(x)  # (B, T, C)

    def _attn_mask(self, mask: torch.Tensor, B: int, T: int) -> torch.Tensor:
        """Turn a key padding mask (B, T) into a bool attention mask SDPA accepts."""
        if mask.shape != (B, T):
            raise ValueError(f"mask has shape {tuple(mask.shape)}, expected {(B, T)}")
        if mask.dtype != torch.bool:
            raise ValueError(f"mask must be a bool tensor (True = real token), got {mask.dtype}")
        attn_mask = mask[:, None, None, :]  # (B, 1, 1, T): the same keys hidden from each query
        if self.config.causal:
            causal = torch.ones(T, T, dtype=torch.bool, device=mask.device).tril()
            attn_mask = attn_mask & causal  # (B, 1, T, T)
        return attn_mask

    @staticmethod
    def _cached_attn_mask(start: int, T: int, device: torch.device) -> torch.Tensor | None:
        """Queries at positions start..start+T-1 may see keys 0..their own position.

        From an empty cache that is the plain causal mask, which SDPA makes itself; one new
        token after the cache may see every key: no mask either (None).
        """
        if start == 0 or T == 1:
            return None
        allowed = torch.ones(T, start + T, dtype=torch.bool, device=device)
        return allowed.tril(diagonal=start)[None, None]  # (1, 1, T, start + T)


def init_weights(module: nn.Module) -> None:
    """GPT-2 init: N(0, 0.02) for Linear and Embedding weights, zero biases."""
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)


class CausalLM(nn.Module):
    """A causal GPT trunk with a language-model head (tied to the token embedding or not)."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        if not cfg.causal:
            # A bidirectional LM sees the token it must predict: its loss drops to ~0.
            raise ValueError("CausalLM needs a causal trunk; got GPTConfig(causal=False)")
        self.config = cfg
        self.transformer = GPT(cfg)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.padded_vocab_size, bias=False)
        if cfg.tie_embeddings:
            # Weight tying: one matrix both embeds tokens and scores them (fewer
            # parameters, and it trains better on small data).
            self.lm_head.weight = self.transformer.wte.weight
        else:
            nn.init.normal_(self.lm_head.weight, mean=0.0, std=0.02)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """Logits over the real vocabulary from normalised hidden states (..., C) -> (..., V).

        The padding rows of the embedding are cut off here, so they never reach a loss or
        a sampler. The logit lens can call this on `transformer.ln_f(hidden[i])`.
        """
        return self.lm_head(h)[..., : self.config.vocab_size]

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        label_smoothing: float = 0.0,
        all_logits: bool = False,
        cache: KVCache | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Next-token logits and, when `targets` (B, T) are given, the mean cross-entropy.

        Targets equal to -100 are skipped. Without targets only the last position's logits
        (B, 1, V) are computed (all that sampling needs) unless `all_logits` is set; with
        targets, logits are (B, T, V). `cache`: see `GPT.forward` (generation only).
        """
        x = self.transformer(idx, cache=cache)  # (B, T, C)
        if targets is not None:
            logits = self.logits(x)  # (B, T, V)
            loss = F.cross_entropy(
                logits.reshape(-1, logits.size(-1)),
                targets.reshape(-1),
                ignore_index=-100,
                label_smoothing=label_smoothing,
            )
            return logits, loss
        if all_logits:
            return self.logits(x), None  # (B, T, V)
        return self.logits(x[:, [-1], :]), None  # (B, 1, V); the list index keeps the T dim

    def new_cache(self) -> KVCache:
        """An empty key/value cache for `forward(..., cache=)`, one slot per block."""
        return KVCache(self.config.n_layer, self.config.block_size)

    @torch.no_grad()
    def generate(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
        eos_id: int | None = None,
        use_cache: bool = True,
    ) -> torch.Tensor:
        """Extend `idx` (B, T) by up to `max_new_tokens` sampled tokens; returns (B, T + n).

        `temperature` 0 picks the most likely token (greedy); `top_k` keeps only the k most
        likely tokens before sampling; `generator` makes sampling reproducible (see
        `sample_next`). With `eos_id`, a row that has produced it is filled with `eos_id`
        from then on, and generation stops once every row has. With `use_cache` (the
        default) the prompt is run once and each step runs only the newest token against
        the cached keys and values; the tokens are the same as without it. Runs in eval
        mode (no dropout) and restores the previous mode afterwards.
        """
        if max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
        check_sampling(temperature, top_k)
        block_size = self.config.block_size
        was_training = self.training
        self.eval()
        try:
            cache = self.new_cache() if use_cache else None
            done = torch.zeros(idx.size(0), dtype=torch.bool, device=idx.device)  # (B,)
            for _ in range(max_new_tokens):
                if cache is None:
                    logits, _ = self(idx[:, -block_size:])  # the model sees block_size at most
                else:
                    logits, _ = self(cache_window(idx, cache), cache=cache)
                idx_next = sample_next(logits[:, -1, :], temperature, top_k, generator)
                if eos_id is not None:
                    idx_next = idx_next.masked_fill(done[:, None], eos_id)
                    done = done | (idx_next[:, 0] == eos_id)
                idx = torch.cat((idx, idx_next), dim=1)
                # this is a CPU-GPU sync point (once per token; it lets finished rows stop)
                if eos_id is not None and bool(done.all()):
                    break
        finally:
            self.train(was_training)
        return idx


def cache_window(idx: torch.Tensor, cache: KVCache) -> torch.Tensor:
    """The tokens of `idx` (B, T) to run next against `cache`: only the newest one, or,
    on the first step and whenever the cache is full, the last block_size tokens (the
    cache is reset and refilled: exactly the window the uncached path would see).

    The one rule for this, used by `generate` and by inference telemetry alike.
    """
    if cache.pos == 0 or cache.pos == cache.block_size:
        cache.reset()
        return idx[:, -cache.block_size:]
    return idx[:, -1:]


def check_sampling(temperature: float, top_k: int | None) -> None:
    """Raise ValueError unless `temperature` >= 0 and `top_k` is None or >= 1."""
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be >= 1 or None, got {top_k}")


def sample_next(
    logits: torch.Tensor,
    temperature: float,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Choose the next token of each row from its logits (B, V); returns ids (B, 1).

    The one sampler of llmkit: `generate` and the inspection tools call it, so the same
    seed gives the same text in both. `temperature` 0 is greedy (argmax, no randomness);
    otherwise logits are divided by it, cut to the `top_k` likeliest when given, and one
    token is drawn with `generator` (on the logits' device) from the softmax, in float32.
    """
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)  # (B, 1)
    logits = logits.float() / temperature
    if top_k is not None:
        v, _ = torch.topk(logits, min(top_k, logits.size(-1)))
        logits = logits.masked_fill(logits < v[:, [-1]], float("-inf"))
    probs = F.softmax(logits, dim=-1)  # (B, V)
    return torch.multinomial(probs, 1, generator=generator)  # (B, 1)


def param_counts(cfg: GPTConfig) -> tuple[int, int]:
    """(total, non_embedding) parameter counts of the causal LM (trunk and head).

    Non-embedding leaves out the token and position embeddings; a tied head is the token
    embedding (counted once, as an embedding), an untied head is a matrix like any other
    and counts. The total includes the padding rows of a padded vocabulary. A span head
    would add 2 * n_embd + 2 instead of the LM head. The model is built on the meta
    device, so this costs no memory even for large configs.
    """
    with torch.device("meta"):
        return count_parameters(CausalLM(cfg))


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(total, non_embedding) parameters of a GPT trunk, or of a model holding one as
    `.transformer`; a tied head is one parameter with the embedding, so counted once."""
    trunk = model if isinstance(model, GPT) else model.transformer
    total = sum(p.numel() for p in model.parameters())
    embedding = trunk.wte.weight.numel()
    if trunk.wpe is not None:  # rotary architectures have no position table
        embedding += trunk.wpe.weight.numel()
    return total, total - embedding


def configure_optimizer_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Optimizer parameter groups: decay weight matrices only; mark the hidden ones.

    Decayed: Linear weights (every parameter with dim >= 2 that is not an embedding).
    Not decayed: biases, norm weights, and the token and position embeddings. The
    embeddings are left alone (as in minGPT) because a rare token's row gets a gradient
    only when the token appears, but decay would shrink it at every step. A tied LM head
    is the token embedding, so it is not decayed either.

    Each group carries `hidden`: True for the 2-D weight matrices inside the transformer
    blocks, the ones Muon orthogonalises; embeddings, norms, biases and heads are False
    (they stay with AdamW). Every trainable parameter appears in exactly one group, tied
    ones once; empty groups are left out.
    """
    embedding_ids = {
        id(p) for m in model.modules() if isinstance(m, nn.Embedding) for p in m.parameters()
    }
    hidden, head, no_decay = [], [], []
    # named_parameters() yields a tied parameter once, under its first name
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.dim() >= 2 and id(p) not in embedding_ids:
            (hidden if ".h." in f".{name}" else head).append(p)
        else:
            no_decay.append(p)
    groups = [
        {"params": hidden, "weight_decay": weight_decay, "hidden": True},
        {"params": head, "weight_decay": weight_decay, "hidden": False},
        {"params": no_decay, "weight_decay": 0.0, "hidden": False},
    ]
    return [g for g in groups if g["params"]]
