"""The reference backend: exact block-sparse attention in pure PyTorch, on any device.

Query blocks are processed in chunks; each gathers only the key blocks its layout needs,
so memory is proportional to the pattern's computed blocks, never n x n. Forward keeps the
log-sum-exp per row and backward recomputes the probabilities chunk by chunk (the
FlashAttention recipe, Dao et al. 2022), so training memory is O(n·D) beyond one chunk.
A query row with no allowed key outputs zeros (and gets zero gradients); a row allowed to
attend a non-finite key or value outputs NaN, and no other row sees it (:mod:`.nonfinite`).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from sparsetorch.attention.backends import nonfinite
from sparsetorch.attention.layout import BlockLayout
from sparsetorch.attention.pattern import MaskFn

BLOCK = 64  # tokens per block (queries and keys)
CHUNK_ELEMENTS = 1 << 20  # score elements (B·H·rows·keys) computed at once


def _chunks(layout: BlockLayout, batch_heads: int) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
    """(query blocks (c,), their key blocks (c, m), which of those are real (c, m)).

    Query blocks go in order of how many key blocks they need, so a chunk is padded only to
    the widest of similar rows; a chunk holds at most CHUNK_ELEMENTS scores.
    """
    order, counts, idx = layout.schedule
    per_pair = batch_heads * layout.block[0] * layout.block[1]  # scores per block pair
    start = 0
    while start < len(counts):
        end = start + 1
        while (
            end < len(counts)
            and (end + 1 - start) * max(1, counts[end]) * per_pair <= CHUNK_ELEMENTS
        ):
            end += 1
        m = max(1, counts[end - 1])  # counts ascend: the last is the widest
        num = torch.tensor(counts[start:end], device=idx.device)
        valid = torch.arange(m, device=idx.device) < num[:, None]  # (c, m)
        yield order[start:end], idx[start:end, :m].long(), valid
        start = end


def _positions(layout: BlockLayout, fn: MaskFn, qb, kb, valid) -> tuple[Tensor, Tensor, Tensor]:
    """(query positions (c, bq), key positions (c, m·bk) clamped into range, allowed
    (c, bq, m·bk)) of one chunk."""
    n, (bq, bk) = layout.n, layout.block
    device = qb.device
    qpos = qb[:, None] * bq + torch.arange(bq, device=device)  # (c, bq)
    kpos = kb[:, :, None] * bk + torch.arange(bk, device=device)  # (c, m, bk)
    kvalid = valid[:, :, None] & (kpos < n)  # (c, m, bk)
    allowed = fn(qpos[:, :, None], kpos.flatten(1)[:, None, :])
    allowed = allowed & kvalid.flatten(1)[:, None, :] & (qpos < n)[:, :, None]
    return qpos, kpos.flatten(1).clamp(max=n - 1), allowed


def _seeing(allowed: Tensor, kpos: Tensor, bad: Tensor) -> Tensor:
    """(B, H, c, bq): the chunk's rows allowed to attend a key where ``bad`` (B, H, n) holds."""
    return (allowed & bad[:, :, kpos][..., None, :]).any(-1)


def rows_seeing(layout: BlockLayout, fn: MaskFn, bad: Tensor) -> Tensor:
    """(B, H, n) bool: the query rows allowed to attend a position where ``bad`` is True."""
    batch, heads, n = bad.shape
    nqb, bq = layout.shape[0], layout.block[0]
    out = bad.new_zeros((batch, heads, nqb, bq))
    for qb, kb, valid in _chunks(layout, batch * heads):
        _, kpos, allowed = _positions(layout, fn, qb, kb, valid)
        out[:, :, qb] = _seeing(allowed, kpos, bad)
    return out.flatten(2)[:, :, :n]


class _Tiles:
    """One chunk: the gathered queries / keys / values and the allowed mask."""

    def __init__(self, q, k, v, layout: BlockLayout, fn: MaskFn, qb, kb, valid) -> None:
        n = layout.n
        self.qpos, self.kpos, self.allowed = _positions(layout, fn, qb, kb, valid)
        self.q = _rows(q, self.qpos.clamp(max=n - 1))  # (B, H, c, bq, D)
        self.k = _rows(k, self.kpos)  # (B, H, c, m·bk, D)
        self.v = _rows(v, self.kpos)  # (B, H, c, m·bk, Dv)

    def scores(self, scale: float) -> Tensor:
        s = self.q @ self.k.transpose(-1, -2) * scale  # (B, H, c, bq, m·bk)
        return s.masked_fill(~self.allowed, float("-inf"))


def _rows(x: Tensor, pos: Tensor) -> Tensor:
    """x (B, H, n, D) at positions pos (c, t) -> (B, H, c, t, D), in float32 at least."""
    out = x[:, :, pos]
    return out.float() if out.dtype in (torch.float16, torch.bfloat16) else out


def _acc(dtype: torch.dtype) -> torch.dtype:
    """The dtype we accumulate in: float32 for half precision inputs."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def _padded(x: Tensor, layout: BlockLayout) -> Tensor:
    """(B, H, n, ...) -> (B, H, nqb, bq, ...), zero-padded to whole blocks, accumulation dtype."""
    nqb, bq = layout.shape[0], layout.block[0]
    out = x.new_zeros((*x.shape[:2], nqb * bq, *x.shape[3:]), dtype=_acc(x.dtype))
    out[:, :, : x.shape[2]] = x
    return out.view(*x.shape[:2], nqb, bq, *x.shape[3:])


def forward_pass(
    q, k, v, layout: BlockLayout, fn: MaskFn, scale: float, bad: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor | None]:
    """(out (B, H, n, Dv) in q's dtype, log-sum-exp (B, H, n) float32, -inf on empty rows;
    with ``bad`` (B, H, n): the rows allowed to attend a bad position (B, H, n), else None).
    k and v must be finite where ``bad`` is given (:func:`.nonfinite.split`)."""
    batch, heads, n = q.shape[:3]
    nqb, bq = layout.shape[0], layout.block[0]
    out = q.new_zeros((batch, heads, nqb, bq, v.shape[-1]), dtype=_acc(q.dtype))
    lse = q.new_zeros((batch, heads, nqb, bq), dtype=_acc(q.dtype))
    seeing = None if bad is None else bad.new_zeros((batch, heads, nqb, bq))
    for qb, kb, valid in _chunks(layout, batch * heads):
        t = _Tiles(q, k, v, layout, fn, qb, kb, valid)
        if seeing is not None:
            seeing[:, :, qb] = _seeing(t.allowed, t.kpos, bad)
        s = t.scores(scale)
        m = s.amax(-1, keepdim=True)
        m = m.masked_fill(m == float("-inf"), 0.0)  # empty rows: keep exp() finite
        p = torch.exp(s - m)
        denom = p.sum(-1, keepdim=True)
        out[:, :, qb] = (p @ t.v) / denom.clamp_min(torch.finfo(denom.dtype).tiny)
        lse[:, :, qb] = (m + denom.log()).squeeze(-1)  # log 0 = -inf for empty rows
    out = out.flatten(2, 3)[:, :, :n].to(q.dtype)
    seeing = None if seeing is None else seeing.flatten(2)[:, :, :n]
    return out, lse.flatten(2)[:, :, :n], seeing


def backward_pass(q, k, v, out, lse, dout, layout: BlockLayout, fn: MaskFn, scale: float):
    """Gradients (dq, dk, dv) of ``sum(dout * out)``, recomputing probabilities per chunk."""
    batch, heads, n = q.shape[:3]
    q = q.masked_fill((lse == float("-inf"))[..., None], 0.0)  # an empty row's query reaches
    # no dk (0 * NaN would): (B, H, n, D)
    lse = _padded(lse, layout)
    lse = lse.masked_fill(lse == float("-inf"), float("inf"))  # empty rows: p = exp(-inf) = 0
    dout = _padded(dout, layout)  # (B, H, nqb, bq, Dv)
    delta = (dout * _padded(out, layout)).sum(-1)  # (B, H, nqb, bq)
    dq = dout.new_zeros((*dout.shape[:-1], q.shape[-1]))  # (B, H, nqb, bq, D)
    dk = torch.zeros_like(k, dtype=dq.dtype)
    dv = torch.zeros_like(v, dtype=dq.dtype)
    for qb, kb, valid in _chunks(layout, batch * heads):
        t = _Tiles(q, k, v, layout, fn, qb, kb, valid)
        p = torch.exp(t.scores(scale) - lse[:, :, qb, :, None])  # (B, H, c, bq, m·bk)
        do = dout[:, :, qb]  # (B, H, c, bq, Dv)
        keys = t.kpos.flatten()  # (c·m·bk,)
        dv.index_add_(2, keys, (p.transpose(-1, -2) @ do).flatten(2, 3))
        ds = p * (do @ t.v.transpose(-1, -2) - delta[:, :, qb, :, None]) * scale
        dq[:, :, qb] = ds @ t.k
        dk.index_add_(2, keys, (ds.transpose(-1, -2) @ t.q).flatten(2, 3))
    dq = dq.flatten(2, 3)[:, :, :n]
    return dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype)


class BlockSparseAttention(torch.autograd.Function):
    """Exact attention over a block layout: forward and backward as above. Returns the output
    and the rows that see a ``bad`` position (not differentiable)."""

    @staticmethod
    def forward(ctx, q, k, v, layout: BlockLayout, fn: MaskFn, scale: float, bad):
        out, lse, seeing = forward_pass(q, k, v, layout, fn, scale, bad)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.layout, ctx.fn, ctx.scale = layout, fn, scale
        if seeing is not None:
            ctx.mark_non_differentiable(seeing)
        return out, seeing

    @staticmethod
    def backward(ctx, dout, dseeing):
        q, k, v, out, lse = ctx.saved_tensors
        dq, dk, dv = backward_pass(q, k, v, out, lse, dout, ctx.layout, ctx.fn, ctx.scale)
        return dq, dk, dv, None, None, None, None


def reference_attention(q, k, v, layout: BlockLayout, fn: MaskFn, scale: float) -> Tensor:
    k, v, bad = nonfinite.split(k, v)
    if torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v)):
        out, seeing = BlockSparseAttention.apply(q, k, v, layout, fn, scale, bad)
    else:
        out, _, seeing = forward_pass(q, k, v, layout, fn, scale, bad)
    return nonfinite.poison(out, seeing)
