"""Windows on CUDA: the block mask built inside the compiled FlexAttention call.

The host build (:mod:`.flex`) costs ~0.15 ms of Python and one copy per new (pattern, n),
more than a 4k-token call's ~0.13 ms of GPU time. For a finite band ``lo <= i - j <= hi``
(``local(w)``, ``band(0, w)``) the block lists have a closed form in the sequence length, so
here they are torch ops on the (symbolic) length inside the same ``torch.compile``d function
as FlexAttention: one small extra kernel writes them, nothing is built on the host, and a new
length neither builds nor recompiles (dynamic shapes). The call also returns the lists, which
the flex backend keeps as that length's cached ``BlockMask``.

:func:`band_block_lists` is the torch twin of :func:`sparsetorch.attention.bands._band_runs`
with rows as wide as the block grid (FlexAttention's layout); tests hold the two equal.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import Tensor

from sparsetorch.attention.backends.nonfinite import contained_flex
from sparsetorch.attention.bands import Band
from sparsetorch.attention.layout import FlexBlocks


def _entries(row, col, full, n, bq, bk, lo, hi, nk) -> Tensor:
    """Block-list entries of the band ``lo <= i - j <= hi`` (|lo|, |hi| <= n) tiled into
    bq x bk blocks, elementwise: for query block ``row``, the count (``col`` < 0) or the
    ``col``-th key block index, of the partial (``full`` False) or the full blocks; ``nk`` key
    blocks. Tensors and ints broadcast; ``n`` may be a symbolic size. Entries past a row's
    count are in range and unused."""
    qs = row * bq  # first query of the block
    qe = torch.clamp(qs + bq, max=n)
    j0 = torch.clamp(qs - hi, min=0)
    j1 = torch.clamp(qe - 1 - lo, max=n - 1)  # keys of the block: [j0, j1]
    # floor(max(a, 0) / bk) = max(floor(a / bk), 0) and floor(min(a, n - 1) / bk) =
    # min(floor(a / bk), (n - 1) // bk): dividing before clamping (Inductor fails to compile
    # a floor division of a clamped index under dynamic shapes, torch 2.13 on the CPU)
    first = torch.clamp(torch.div(qs - hi, bk, rounding_mode="floor"), min=0)
    ends = torch.clamp(torch.div(qe - 1 - lo, bk, rounding_mode="floor"), max=(n - 1) // bk)
    last = torch.where(j0 > j1, first - 1, ends)  # the run [first, last] (maybe empty)
    # full: the whole unclipped tile inside the band
    f0 = -torch.div(hi - qe + 1, bk, rounding_mode="floor")  # ceil((qe - 1 - hi) / bk)
    f1 = torch.clamp(torch.div(qs - lo - bk + 1, bk, rounding_mode="floor"), max=n // bk - 1)
    f1 = torch.where(qe - qs < bq, f0 - 1, f1)  # a clipped query block has no full tile
    fa = torch.minimum(torch.maximum(f0, first), last + 1)
    fb = torch.minimum(torch.maximum(f1, fa - 1), last)
    left, right = fa - first, last - fb  # partial blocks before and after the full run
    partial = torch.where(col < left, first + col, fb + 1 + col - left)
    index = torch.clamp(torch.where(full, fa + col, partial), min=0).clamp(max=nk - 1)
    count = torch.where(full, fb - fa + 1, left + right)
    return torch.where(col < 0, count, index).to(torch.int32)


def band_block_lists(
    n, bq: int, bk: int, lo: int, hi: int, device: torch.device | str | None = None
) -> list[Tensor]:
    """[partial count (nqb,), partial indices (nqb, nkb), full count, full indices], int32,
    of the band ``lo <= i - j <= hi`` (lo <= hi, |lo|, |hi| <= n) tiled into bq x bk blocks.
    Entries past a row's count are in range and unused. ``n`` may be a symbolic size."""
    nqb, nkb = (n + bq - 1) // bq, (n + bk - 1) // bk
    row = torch.arange(nqb, device=device)[:, None]  # (nqb, 1)
    col = torch.arange(-1, nkb, device=device)[None, :]  # (1, 1 + nkb): -1 is the count
    full = torch.tensor([False, True], device=device)
    out = [_entries(row, col, f, n, bq, bk, lo, hi, nkb) for f in full]
    return [t.contiguous() for t in (out[0][:, 0], out[0][:, 1:], out[1][:, 0], out[1][:, 1:])]


def band_flat_blocks(n, block: tuple[int, int], lo: int, hi: int, device) -> Tensor:
    """Both sides' block lists of the band at length n in :meth:`FlexBlocks.from_flat`'s
    order, as one pointwise expression over the buffer's positions (Inductor writes it in one
    kernel: a concatenation of the eight lists was several kernels, each a launch). The query
    side is the band ``-hi <= j - i <= -lo`` over the transposed grid."""
    bq, bk = block
    nqb, nkb = (n + bq - 1) // bq, (n + bk - 1) // bk
    c, w = 2 * (nqb + nkb), nqb * nkb
    i = torch.arange(c + 4 * w, device=device)
    # counts: kv (nqb), full kv (nqb), q (nkb), full q (nkb); then index rows, four of w
    q_count = (i >= 2 * nqb).long()
    base = i - q_count * 2 * nqb  # position within its side's two count arrays
    size = nqb + q_count * (nkb - nqb)  # rows of that side
    full_count = base >= size
    count_row = base - full_count.long() * size
    s = torch.div(i - c, w, rounding_mode="floor")  # index section 0..3 (negative: counts)
    e = i - c - s * w  # position within the section
    width = nkb + (s >= 2).long() * (nqb - nkb)  # q rows are nqb wide
    is_count = i < c
    q_side = torch.where(is_count, q_count > 0, s >= 2)
    full = torch.where(is_count, full_count, s % 2 == 1)
    row = torch.where(is_count, count_row, torch.div(e, width, rounding_mode="floor"))
    col = torch.where(is_count, -1, e - row * width)
    qs = q_side.long()
    return _entries(
        row,
        col,
        full,
        n,
        bq + qs * (bk - bq),
        bk + qs * (bq - bk),
        lo + qs * (-hi - lo),
        hi + qs * (-lo - hi),
        nkb + qs * (nqb - nkb),
    )


def _band_attention(q, k, v, lo: int, hi: int, block, scale: float, kernel_options, bias=None):
    """(attention output, the flat block lists it used): the caller keeps the lists as the
    cached ``BlockMask`` of this length (:mod:`.flex`), so a later call builds nothing."""
    n = q.shape[2]
    allowed = Band(lo, hi).fn(n, q.device)  # the band's own predicate

    def mask_mod(b, h, q_idx, kv_idx):
        return allowed(q_idx, kv_idx)

    flat = band_flat_blocks(n, block, lo, hi, q.device)
    if q.device.type == "cpu":
        # torch 2.13's C++ FlexAttention template does not compile views of one buffer as
        # its block lists under dynamic shapes ("'kv_num_blocks' was not declared"), so on
        # the CPU the kernel reads lists computed apart (the same values, tested)
        bq, bk = block
        kv, q_lists = band_block_lists(n, bq, bk, lo, hi), band_block_lists(n, bk, bq, -hi, -lo)
        lists = FlexBlocks(n, block, *kv, *q_lists)
    else:
        lists = FlexBlocks.from_flat(n, block, flat)
    mask = lists.to_block_mask(mask_mod)
    out = contained_flex(q, k, v, mask, scale, kernel_options, bias)  # non-finite: CUDA
    return out, flat


@functools.cache
def compiled_band_attention() -> Callable:
    """FlexAttention over a finite band, its block mask built in the graph; dynamic shapes."""
    return torch.compile(_band_attention, dynamic=True)
