"""``SparseAttention``: a multi-head self-attention block whose attention follows a pattern."""

from __future__ import annotations

from torch import Tensor, nn

from sparsetorch.attention.backends import BACKENDS
from sparsetorch.attention.functional import sparse_attention
from sparsetorch.attention.parse import parse
from sparsetorch.attention.pattern import AttentionPattern


class SparseAttention(nn.Module):
    """Self-attention ``(B, n, E) -> (B, n, E)``: fused q/k/v projection, attention restricted
    to ``pattern`` on ``num_heads`` heads, output projection.

    ``dropout`` is applied to the block's output (after the projection) in training mode:
    fused sparse kernels have no dropout on attention weights, so no backend offers it.
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        pattern: AttentionPattern | str,
        backend: str = "auto",
        dropout: float = 0.0,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if num_heads < 1 or embed_dim % num_heads:
            raise ValueError(
                f"embed_dim ({embed_dim}) must be a positive multiple of num_heads ({num_heads})"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        BACKENDS.build(backend)  # unknown names fail here, listing the known ones
        self.embed_dim, self.num_heads = embed_dim, num_heads
        self.pattern = parse(pattern)
        self.backend = backend
        self.qkv = nn.Linear(embed_dim, 3 * embed_dim, bias=bias)
        self.proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 3 or x.shape[-1] != self.embed_dim:
            raise ValueError(
                f"SparseAttention takes x of shape (batch, n, embed_dim={self.embed_dim}), got "
                f"{tuple(x.shape)}"
            )
        batch, n, _ = x.shape  # (B, n, E)
        qkv = self.qkv(x).view(batch, n, 3, self.num_heads, -1)  # (B, n, 3, H, D)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, H, n, D)
        y = sparse_attention(q, k, v, self.pattern, self.backend)  # (B, H, n, D)
        y = y.transpose(1, 2).reshape(batch, n, self.embed_dim)  # (B, n, E)
        return self.dropout(self.proj(y))

    def extra_repr(self) -> str:
        return (
            f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, "
            f"pattern={self.pattern!r}, backend={self.backend!r}"
        )


__all__ = ["SparseAttention"]
