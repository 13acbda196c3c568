"""Sparse attention inside a model: a small encoder whose blocks attend through
``st.attention.SparseAttention`` with a Longformer-style pattern (a local window plus one
global token), checked against dense masked attention and trained for a few steps.

    python examples/sparse_attention_model.py
"""

import torch
import torch.nn.functional as F
from torch import nn

import sparsetorch as st
from sparsetorch.attention import SparseAttention


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, pattern) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = SparseAttention(dim, heads, pattern, backend="auto")
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, n, dim)
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class Encoder(nn.Module):
    def __init__(self, vocab: int, dim: int, classes: int, pattern) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.blocks = nn.Sequential(Block(dim, 4, pattern), Block(dim, 4, pattern))
        self.head = nn.Linear(dim, classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:  # (B, n) -> (B, classes)
        return self.head(self.blocks(self.embed(tokens))[:, 0])  # the global token's state


n = 128
pattern = st.attention.local(8) | st.attention.global_tokens([0])
print(f"{pattern!r}: {pattern.nnz(n):,} of {n * n:,} scores computed at n={n}")

# the block's attention equals dense attention under the same mask
torch.manual_seed(0)
attn = SparseAttention(32, 4, pattern)
x = torch.randn(2, n, 32)
q, k, v = attn.qkv(x).view(2, n, 3, 4, 8).permute(2, 0, 3, 1, 4).unbind(0)
mask = pattern.mask(n)  # (n, n) bool: the dense reference only
dense = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
expected = attn.proj(dense.transpose(1, 2).reshape(2, n, 32))
assert torch.allclose(attn(x), expected, atol=1e-5)

# train the model: the class is whether token 1 appears anywhere in the sequence, which the
# global token (position 0) can see through two layers
model = Encoder(vocab=16, dim=32, classes=2, pattern=pattern)
optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
generator = torch.Generator().manual_seed(0)
losses = []
for _ in range(30):
    tokens = torch.randint(2, 16, (16, n), generator=generator)
    labels = torch.randint(0, 2, (16,), generator=generator)
    where = torch.randint(1, n, (16,), generator=generator)
    tokens[labels == 1, where[labels == 1]] = 1
    tokens[:, 0] = 0  # the global token
    optimizer.zero_grad()
    loss = F.cross_entropy(model(tokens), labels)
    loss.backward()
    optimizer.step()
    losses.append(loss.item())
print(f"loss {sum(losses[:5]) / 5:.3f} -> {sum(losses[-5:]) / 5:.3f}")
assert sum(losses[-5:]) < sum(losses[:5])
print("ok: sparse attention in a model")
