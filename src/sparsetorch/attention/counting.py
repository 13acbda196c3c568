"""Exact pair counts in rectangles of the (query, key) plane, in closed form.

A rectangle is ``[qs, qe) x [ks, ke)`` (query rows x key columns); every argument broadcasts,
so one call counts a whole grid of blocks. These are the analytic pieces from which every
elementary pattern answers ``nnz`` and ``block_layout`` without evaluating an n x n grid.
All counts are int64.
"""

from __future__ import annotations

import torch
from torch import Tensor


def triangular(m: Tensor) -> Tensor:
    """1 + 2 + ... + m for m > 0, else 0; halving the even factor first, so that the product
    stays in int64 whenever the result does (m up to about 4.29e9)."""
    m = m.clamp_min(0)
    return torch.where(m % 2 == 0, (m // 2) * (m + 1), m * ((m + 1) // 2))


def diff_at_most(qs: Tensor, qe: Tensor, ks: Tensor, ke: Tensor, t: Tensor | int) -> Tensor:
    """#pairs (i, j) in the rectangle with ``i - j <= t``.

    For a row i the allowed keys are ``[max(ks, i - t), ke)``: ``min(W, max(0, ke + t - i))``
    of them (W = ke - ks). Summed over the rows this is a difference of triangular numbers.
    """
    c = ke + t
    w = ke - ks
    return triangular(c - qs) - triangular(c - qe) - triangular(c - w - qs) + triangular(c - w - qe)


def in_band(
    qs: Tensor, qe: Tensor, ks: Tensor, ke: Tensor, lo: Tensor | int, hi: Tensor | int
) -> Tensor:
    """#pairs (i, j) in the rectangle with ``lo <= i - j <= hi``."""
    count = diff_at_most(qs, qe, ks, ke, hi) - diff_at_most(qs, qe, ks, ke, lo - 1)
    return count.clamp_min(0)


def congruent(qs: Tensor, qe: Tensor, ks: Tensor, ke: Tensor, k: int) -> Tensor:
    """#pairs (i, j) in the rectangle with ``i ≡ j (mod k)``.

    Each residue class holds ``L // k`` rows, and ``L % k`` classes (a cyclic run starting at
    ``qs mod k``) hold one more; likewise for keys. The sum over classes of rows x keys is
    ``k·q0·k0 + q0·rk + k0·rq + |Rq ∩ Rk|`` with Rq, Rk the two cyclic runs.
    """
    q0, rq = (qe - qs) // k, (qe - qs) % k
    k0, rk = (ke - ks) // k, (ke - ks) % k
    a, b = qs % k, ks % k
    overlap = sum(
        (torch.minimum(a + rq, b + m * k + rk) - torch.maximum(a, b + m * k)).clamp_min(0)
        for m in (-1, 0, 1)
    )
    return k * q0 * k0 + q0 * rk + k0 * rq + overlap


def residue_range(start: Tensor, end: Tensor, rho: Tensor, d: int) -> tuple[Tensor, Tensor]:
    """Positions ``rho + d·a`` in ``[start, end)``: the range of a, as ``[a0, a1)``."""
    return -((rho - start) // d), -((rho - end) // d)  # ceil((start - rho) / d), ceil(...)


def dilated_band(
    qs: Tensor, qe: Tensor, ks: Tensor, ke: Tensor, w: int, d: int, chunk: int = 1 << 22
) -> Tensor:
    """#pairs (i, j) in the rectangle with ``|i - j| <= w·d`` and ``i ≡ j (mod d)``.

    In the residue class rho, ``i = rho + d·a`` and ``j = rho + d·b`` with ``|a - b| <= w``:
    a band count on the (a, b) sub-grid, summed over the d classes (in chunks of classes so
    that at most ``chunk`` elements are alive at a time).
    """
    qs, qe, ks, ke = torch.broadcast_tensors(qs, qe, ks, ke)
    total = torch.zeros_like(qs)
    step = max(1, chunk // max(1, qs.numel()))
    for first in range(0, d, step):
        rho = torch.arange(first, min(d, first + step), device=qs.device)  # (c,)
        rho = rho.view(-1, *([1] * qs.dim()))  # (c, 1, ..., 1)
        a0, a1 = residue_range(qs, qe, rho, d)
        b0, b1 = residue_range(ks, ke, rho, d)
        empty = (a1 <= a0) | (b1 <= b0)
        count = in_band(a0, a1, b0, b1, -w, w).masked_fill(empty, 0)
        total += count.sum(0)
    return total


def rect_overlaps(
    r0: Tensor, r1: Tensor, c0: Tensor, c1: Tensor, bq: int, bk: int, nqb: int, nkb: int
) -> Tensor:
    """Sum over rectangles ``[r0, r1) x [c0, c1)`` of their overlap with each (bq x bk) block.

    Returns an (nqb, nkb) int64 grid. A rectangle of height h touches at most
    ``ceil(h / bq) + 1`` block rows, so the loops below are short.
    """
    counts = torch.zeros(nqb * nkb, dtype=torch.int64, device=r0.device)
    if r0.numel() == 0:
        return counts.view(nqb, nkb)
    span_q = int(((r1 - r0).max().item() + bq - 1) // bq) + 1
    span_k = int(((c1 - c0).max().item() + bk - 1) // bk) + 1
    for dq in range(span_q):
        qb = r0 // bq + dq
        hq = (torch.minimum(r1, (qb + 1) * bq) - torch.maximum(r0, qb * bq)).clamp_min(0)
        for dk in range(span_k):
            kb = c0 // bk + dk
            wk = (torch.minimum(c1, (kb + 1) * bk) - torch.maximum(c0, kb * bk)).clamp_min(0)
            area = hq * wk
            hit = area > 0
            counts.index_add_(0, (qb * nkb + kb)[hit], area[hit])
    return counts.view(nqb, nkb)
