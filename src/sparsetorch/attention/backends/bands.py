"""Unions of periodic bands through the band kernel: ``causal() & (local(w) | strided(k))``,
``local(w) | strided(k)``, ``dilated(w, d)``, disjoint bands.

:func:`sparsetorch.attention.pieces.pieces` splits the pattern into disjoint pieces ``(lo, hi,
s)``. A piece of period 1 is one band-kernel call. A piece of period s > 1 runs on the sequence
regrouped by residue: position ``r + s·a`` becomes row ``a`` of batch entry ``r`` (q, k and v
copied once into (B·s, H, n/s, D); when s does not divide n the residues below ``n mod s``
have one more position and run as a second call), where it is the band ``ceil(lo/s) <= a - b
<= floor(hi/s)``. Each call returns its rows' log-sum-exp, and the union's softmax is the
exact merge ``out = sum_p 2^(lse_p - lse) out_p`` with ``lse = log2 sum_p 2^lse_p``;
gradients flow through the merge into both outputs of every call.

A block-mask kernel (FlexAttention) pays for every tile a pattern touches, and
``strided(k)`` touches every tile of the causal triangle; here the strided piece costs
O(n²/k) work in dense tiles.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from sparsetorch.attention.backends import nonfinite
from sparsetorch.attention.backends.lse import masked_lse, merge, merge_lse
from sparsetorch.attention.backends.tokens import Tokens
from sparsetorch.attention.pieces import Piece

# (q, k, v, lo, hi, scale) -> (out (B, H, n, D), lse (B, H, n) float32, log2 units, +inf for a
# row without keys): the band kernel's band_attention_lse, or a twin (tests)
BandLse = Callable[[Tensor, Tensor, Tensor, int, int, float], tuple[Tensor, Tensor]]


def _runs(n: int, s: int) -> list[tuple[int, int, int]]:
    """(first residue, end residue, positions per residue) of the regrouped batches."""
    m, rem = divmod(n, s)
    if rem == 0:
        return [(0, s, m)]
    return [(0, rem, m + 1)] + ([(rem, s, m)] if m else [])


def to_groups(x: Tensor, s: int) -> list[Tensor]:
    """x (B, H, n, *rest) regrouped by residue mod s: one tensor (B·c, H, m, *rest) per run of
    residues with m positions each (:func:`_runs`); row a of batch entry (b, r) is position
    r + s·a."""
    b, h, n = x.shape[:3]
    rest = x.shape[3:]
    m1 = -(-n // s)
    if m1 * s != n:
        pad = x.new_zeros(b, h, m1 * s - n, *rest)
        x = torch.cat([x, pad], dim=2)
    g = x.reshape(b, h, m1, s, *rest)  # (B, H, m1, s, *rest)
    return [
        g[:, :, :m, r0:r1].movedim(3, 1).reshape(b * (r1 - r0), h, m, *rest)
        for r0, r1, m in _runs(n, s)
    ]


def from_groups(parts: list[Tensor], s: int, n: int) -> Tensor:
    """The inverse of :func:`to_groups`: (B, H, n, *rest); residues without a position (n < s)
    and the padding are zeros, cut off."""
    bc, h = parts[0].shape[:2]
    rest = parts[0].shape[3:]
    m1 = -(-n // s)
    runs = _runs(n, s)
    b = bc // (runs[0][1] - runs[0][0])
    g = parts[0].new_zeros(b, h, m1, s, *rest)
    for part, (r0, r1, m) in zip(parts, runs, strict=True):
        g[:, :, :m, r0:r1] = part.reshape(b, r1 - r0, h, m, *rest).movedim(1, 3)  # (B, H, m, c)
    return g.reshape(b, h, m1 * s, *rest)[:, :, :n]


def _piece(run: BandLse, q, k, v, piece: Piece, scale: float) -> tuple[Tensor, Tensor]:
    n, s = q.shape[2], piece.period
    if s == 1:
        return run(q, k, v, piece.lo, piece.hi, scale)
    lo, hi = piece.group_band()
    outs, lses = [], []
    for qg, kg, vg in zip(to_groups(q, s), to_groups(k, s), to_groups(v, s), strict=True):
        out, lse = run(qg, kg, vg, lo, hi, scale)
        outs.append(out)
        lses.append(lse)
    return from_groups(outs, s, n), from_groups(lses, s, n)


def bands_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    parts: list[Piece],
    scale: float,
    run: BandLse,
    tokens: Tokens | None = None,
) -> Tensor:
    """Attention over the union of the disjoint ``parts``, each through ``run``, and of the
    global ``tokens``' rows and columns when given (``parts`` are then its base's pieces);
    non-finite keys and values contained (rows that may see one are NaN)."""
    k, v, bad = nonfinite.split(k, v)
    parts = parts or [Piece(1, 0, 1)]  # a pattern without pairs: one empty band (zeros)
    outs, lses = [], []
    for piece in parts:
        out, lse = _piece(run, q, k, v, piece, scale)
        outs.append(out)
        lses.append(lse)
    seen = _rows_seeing(bad, parts, q.shape[1])
    if tokens is None:
        return nonfinite.poison(merge(outs, lses), seen)
    base, base_lse = merge_lse(outs, lses)
    extra, extra_lse = tokens.columns(q, k, v, scale)
    out = tokens.rows(q, k, v, merge([base, extra], [base_lse, extra_lse]), scale)
    return nonfinite.poison(out, None if bad is None else tokens.seen(bad, seen, q.shape[1]))


def _rows_seeing(bad: Tensor | None, parts: list[Piece], heads: int) -> Tensor | None:
    """(B, heads, n): the rows some piece lets attend a ``bad`` (B, H_kv, n) key."""
    if bad is None:
        return None
    n, seen = bad.shape[-1], None
    for piece in parts:
        if piece.period == 1:
            rows = nonfinite.band_rows_seeing(bad, piece.lo, piece.hi, heads)
        else:
            lo, hi = piece.group_band()
            groups = to_groups(bad, piece.period)
            hit = [nonfinite.band_rows_seeing(g, lo, hi, heads) for g in groups]
            rows = from_groups(hit, piece.period, n)
        seen = rows if seen is None else seen | rows
    return seen


def reference_band_lse(q, k, v, lo: int, hi: int, scale: float) -> tuple[Tensor, Tensor]:
    """The band kernel's contract in plain torch (masked dense attention, O(n²) memory), for
    checks on any device: (out, lse in log2 units, +inf for a row without keys); float32
    work, float64 for float64 inputs (lse too)."""
    n = q.shape[2]
    group = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(group, 1), v.repeat_interleave(group, 1)
    i = torch.arange(n, device=q.device)
    d = i[:, None] - i[None, :]
    return masked_lse(q, k, v, (d >= lo) & (d <= hi), scale)


__all__ = ["bands_attention", "from_groups", "merge", "reference_band_lse", "to_groups"]
