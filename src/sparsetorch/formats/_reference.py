"""Reference products in plain torch ops (gather + index_add), the twins of the fast paths.

Exact in structure, not in speed: they gather one row of ``x`` per stored value, so they move
``nnz * k`` numbers where a tuned kernel streams ``x`` once. Work is chunked so peak extra
memory stays near ``_CHUNK`` elements. Half types accumulate in float32.
"""

from __future__ import annotations

import torch

from sparsetorch.formats._base import accumulate_dtype

_CHUNK = 1 << 22  # elements of gathered operand per chunk


def spmm_coo(
    rows: torch.Tensor, cols: torch.Tensor, values: torch.Tensor, x: torch.Tensor, n_rows: int
) -> torch.Tensor:
    """y[rows[e]] += values[e] * x[cols[e]]; rows/cols/values (nnz,), x (n, k) -> (n_rows, k)."""
    acc = accumulate_dtype(values.dtype)
    k = x.shape[1]
    y = torch.zeros(n_rows, k, dtype=acc, device=x.device)
    step = max(1, _CHUNK // max(k, 1))
    for s in range(0, values.numel(), step):
        r, c, v = rows[s : s + step], cols[s : s + step], values[s : s + step]
        y.index_add_(0, r.long(), v.to(acc).unsqueeze(1) * x[c.long()].to(acc))  # (chunk, k)
    return y.to(values.dtype)


def spmm_blocks(
    block_rows: torch.Tensor,
    block_cols: torch.Tensor,
    blocks: torch.Tensor,
    x: torch.Tensor,
    n_rows: int,
) -> torch.Tensor:
    """Block sparse @ dense: blocks (nb, h, w) at (block_rows, block_cols); x (n, k)."""
    nb, h, w = blocks.shape
    acc = accumulate_dtype(blocks.dtype)
    k = x.shape[1]
    xb = x.reshape(x.shape[0] // w, w, k)  # (n/w, w, k)
    y = torch.zeros(n_rows // h, h, k, dtype=acc, device=x.device)
    step = max(1, _CHUNK // max(w * k, 1))
    for s in range(0, nb, step):
        part = torch.bmm(
            blocks[s : s + step].to(acc), xb[block_cols[s : s + step].long()].to(acc)
        )  # (chunk, h, k)
        y.index_add_(0, block_rows[s : s + step].long(), part)
    return y.reshape(n_rows, k).to(blocks.dtype)


def spmm_rows(cols: torch.Tensor, values: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Fixed slots per row (N:M): y[r] = sum_j values[r, j] * x[cols[r, j]]; cols (R, s)."""
    acc = accumulate_dtype(values.dtype)
    n_rows, slots = values.shape
    k = x.shape[1]
    y = torch.empty(n_rows, k, dtype=acc, device=x.device)
    step = max(1, _CHUNK // max(slots * k, 1))
    for s in range(0, n_rows, step):
        gathered = x[cols[s : s + step].long()].to(acc)  # (chunk, slots, k)
        y[s : s + step] = torch.einsum("rs,rsk->rk", values[s : s + step].to(acc), gathered)
    return y.to(values.dtype)
