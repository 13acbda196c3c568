"""A small causal character-level Transformer (GPT-style, after nanoGPT) with pattern attention.

``CausalTransformer(vocab_size, context, attention=local(64) | global_tokens([0]))`` attends
with ``causal() & attention`` in every layer (plain causal attention when attention is None).
Pre-LayerNorm blocks, learned positions, GELU MLP of width 4·d_model; init N(0, 0.02) with the
residual projections scaled by 1/sqrt(2·n_layers) (GPT-2). Input (B, T) token ids, T <= context;
output (B, T, vocab_size) next-token logits.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from sparsetorch.attention import AttentionPattern, SparseAttention, causal, parse


class Block(nn.Module):
    def __init__(self, d_model: int, n_heads: int, pattern: AttentionPattern, backend: str):
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = SparseAttention(d_model, n_heads, pattern, backend=backend)
        self.ln2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(
            nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model)
        )

    def forward(self, x: Tensor) -> Tensor:  # (B, T, d)
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class CausalTransformer(nn.Module):
    def __init__(
        self,
        vocab_size: int,
        context: int,
        d_model: int = 128,
        n_layers: int = 2,
        n_heads: int = 4,
        attention: AttentionPattern | str | None = None,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        for name, value in (
            ("vocab_size", vocab_size),
            ("context", context),
            ("n_layers", n_layers),
        ):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        self.context = context
        self.pattern = causal() if attention is None else causal() & parse(attention)
        self.tok = nn.Embedding(vocab_size, d_model)
        self.pos = nn.Embedding(context, d_model)
        self.blocks = nn.ModuleList(
            Block(d_model, n_heads, self.pattern, backend) for _ in range(n_layers)
        )
        self.ln = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size, bias=False)
        self._init(n_layers)

    def _init(self, n_layers: int) -> None:
        for module in self.modules():
            if isinstance(module, nn.Linear | nn.Embedding):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        for block in self.blocks:  # residual projections (GPT-2)
            for proj in (block.attn.proj, block.mlp[2]):
                nn.init.normal_(proj.weight, mean=0.0, std=0.02 / math.sqrt(2 * n_layers))

    def forward(self, idx: Tensor) -> Tensor:
        t = idx.shape[1]  # idx: (B, T) token ids
        if t > self.context:
            raise ValueError(f"sequence length {t} exceeds the context {self.context}")
        pos = torch.arange(t, device=idx.device)
        x = self.tok(idx) + self.pos(pos)  # (B, T, d)
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln(x))  # (B, T, vocab)
