"""Windows on CUDA: the block mask built inside the compiled FlexAttention call.

The cached path (:mod:`.flex`) builds a ``BlockMask`` on the host for every new (pattern, n):
~0.15 ms of Python and one copy, which a 4k-token call (~0.24 ms) cannot hide. For a finite
band ``lo <= i - j <= hi`` (``local(w)``, ``band(0, w)``) the block lists have a closed form in
the sequence length, so here they are torch ops on the (symbolic) length inside the same
``torch.compile``d function as FlexAttention: Inductor fuses them into a few small kernels per
call, there is nothing to cache and nothing to build on the host, and a new length neither
builds nor recompiles (dynamic shapes).

:func:`band_block_lists` is the torch twin of :func:`sparsetorch.attention.bands._band_runs`
with rows as wide as the block grid (FlexAttention's layout); tests hold the two equal.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import Tensor

from sparsetorch.attention.bands import Band


def band_block_lists(
    n, bq: int, bk: int, lo: int, hi: int, device: torch.device | str | None = None
) -> list[Tensor]:
    """[partial count (nqb,), partial indices (nqb, nkb), full count, full indices], int32,
    of the band ``lo <= i - j <= hi`` (lo <= hi, |lo|, |hi| <= n) tiled into bq x bk blocks.
    Entries past a row's count are in range and unused. ``n`` may be a symbolic size."""
    nqb, nkb = (n + bq - 1) // bq, (n + bk - 1) // bk
    qs = torch.arange(nqb, device=device) * bq  # (nqb,) first query of each block
    qe = torch.clamp(qs + bq, max=n)
    j0 = torch.clamp(qs - hi, min=0)
    j1 = torch.clamp(qe - 1 - lo, max=n - 1)  # keys of the block: [j0, j1]
    # floor(max(a, 0) / bk) = max(floor(a / bk), 0) and floor(min(a, n - 1) / bk) =
    # min(floor(a / bk), (n - 1) // bk): dividing before clamping (Inductor fails to compile
    # a floor division of a clamped index under dynamic shapes, torch 2.13 on the CPU)
    first = torch.clamp(torch.div(qs - hi, bk, rounding_mode="floor"), min=0)
    ends = torch.clamp(torch.div(qe - 1 - lo, bk, rounding_mode="floor"), max=(n - 1) // bk)
    last = torch.where(j0 > j1, first - 1, ends)
    # full: the whole unclipped tile inside the band
    f0 = -torch.div(hi - qe + 1, bk, rounding_mode="floor")  # ceil((qe - 1 - hi) / bk)
    f1 = torch.clamp(torch.div(qs - lo - bk + 1, bk, rounding_mode="floor"), max=n // bk - 1)
    f1 = torch.where(qe - qs < bq, f0 - 1, f1)  # a clipped query block has no full tile
    fa = torch.minimum(torch.maximum(f0, first), last + 1)
    fb = torch.minimum(torch.maximum(f1, fa - 1), last)
    left, right = fa - first, last - fb  # partial blocks before and after the full run
    t = torch.arange(nkb, device=device)[None, :]  # (1, nkb)
    idx = torch.where(t < left[:, None], first[:, None] + t, fb[:, None] + 1 + t - left[:, None])
    full_idx = fa[:, None] + t
    return [
        (left + right).to(torch.int32),
        torch.clamp(idx, 0, nkb - 1).to(torch.int32),
        (fb - fa + 1).to(torch.int32),
        torch.clamp(full_idx, 0, nkb - 1).to(torch.int32),
    ]


def band_block_mask(n, block: tuple[int, int], lo: int, hi: int, device, mask_mod: Callable):
    """FlexAttention's ``BlockMask`` of the band at length n (both sides), from torch ops."""
    from torch.nn.attention.flex_attention import BlockMask

    bq, bk = block
    kv = band_block_lists(n, bq, bk, lo, hi, device)
    q = kv if (bq == bk and lo == -hi) else band_block_lists(n, bk, bq, -hi, -lo, device)
    kv, q = ([t[None, None] for t in side] for side in (kv, q))  # (1, 1, ...): B, H broadcast
    return BlockMask(
        seq_lengths=(n, n),
        kv_num_blocks=kv[0],
        kv_indices=kv[1],
        full_kv_num_blocks=kv[2],
        full_kv_indices=kv[3],
        q_num_blocks=q[0],
        q_indices=q[1],
        full_q_num_blocks=q[2],
        full_q_indices=q[3],
        BLOCK_SIZE=(bq, bk),
        mask_mod=mask_mod,
    )


def _band_attention(q, k, v, lo: int, hi: int, block, scale: float, kernel_options):
    from torch.nn.attention.flex_attention import flex_attention

    allowed = Band(lo, hi).fn(q.shape[2], q.device)  # the band's own predicate

    def mask_mod(b, h, q_idx, kv_idx):
        return allowed(q_idx, kv_idx)

    mask = band_block_mask(q.shape[2], block, lo, hi, q.device, mask_mod)
    return flex_attention(q, k, v, block_mask=mask, scale=scale, kernel_options=kernel_options)


@functools.cache
def compiled_band_attention() -> Callable:
    """FlexAttention over a finite band, its block mask built in the graph; dynamic shapes."""
    return torch.compile(_band_attention, dynamic=True)
