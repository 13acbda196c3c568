"""Diagonal bands: ``lo <= i - j <= hi``. Causal, local (sliding window) and their meet.

``causal()`` is ``band(0, None)`` (keys up to the query), ``local(w)`` is ``band(-w, w)``
(``|i - j| <= w``, local attention, cost O(nw)). Bands are closed under ``&``
and under ``|`` when they touch, so ``causal() & local(w)`` is the single band ``band(0, w)``
(a causal sliding window) and keeps exact counts.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from sparsetorch.attention.counting import in_band
from sparsetorch.attention.layout import FlexBlocks, blocks
from sparsetorch.attention.pattern import AttentionPattern, Bounds, Grid, MaskFn

LIMIT = 2**62  # offsets are compared as int64: beyond this they overflow


def _int_or_none(name: str, value: object) -> int | None:
    if value is None:
        return value
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int or None, got {type(value).__name__}")
    if abs(value) > LIMIT:
        raise ValueError(f"{name} must be within ±2**62 (None: no limit), got {value}")
    return value


class Band(AttentionPattern):
    def __init__(self, lo: int | None, hi: int | None) -> None:
        self.lo = _int_or_none("lo", lo)  # None: no lower limit on i - j
        self.hi = _int_or_none("hi", hi)  # None: no upper limit

    def fn(self, n: int, device=None) -> MaskFn:
        lo, hi = self.lo, self.hi

        def band(q, kv):
            d = q - kv
            allowed = d == d  # all True, broadcast shape
            if lo is not None:
                allowed = allowed & (d >= lo)
            if hi is not None:
                allowed = allowed & (d <= hi)
            return allowed

        return band

    def bounds(self, grid: Grid) -> Bounds:
        lo = -grid.n if self.lo is None else self.lo  # |i - j| < n: ±n is unbounded
        hi = grid.n if self.hi is None else self.hi
        count = in_band(grid.qs, grid.qe, grid.ks, grid.ke, lo, hi)
        return count, count

    def key(self) -> tuple:
        return (self.lo, self.hi)

    def _bounds_within(self, n: int) -> tuple[int, int]:
        """(lo, hi) for length n (validated), unbounded sides and |bounds| > n clipped to +-n
        (the closed form's domain; |i - j| < n, so nothing changes)."""
        self._validate(n)
        lo = -n if self.lo is None else max(self.lo, -n)
        hi = n if self.hi is None else min(self.hi, n)
        return lo, hi

    def flex_blocks(self, n: int, block: int | tuple[int, int] = 128, device=None) -> FlexBlocks:
        """Closed form, without any block grid: the key blocks of a query block are one run
        and its full blocks a sub-run. A few numpy ops over the query blocks on the host, then
        :meth:`FlexBlocks.from_host` (one small copy to ``device``, widened there); a symmetric
        band with square blocks reuses its key side as its query side."""
        lo, hi = self._bounds_within(n)
        bq, bk = blocks(block)
        kv = _band_runs(n, bq, bk, lo, hi)
        q = kv if (bq == bk and lo == -hi) else _band_runs(n, bk, bq, -hi, -lo)
        return FlexBlocks.from_host(n, (bq, bk), kv, q, device)

    def block_density(self, n: int, block: int | tuple[int, int] = 128) -> float:
        """Closed form: the run lengths of ``_band_runs`` (host numpy, no block grid)."""
        lo, hi = self._bounds_within(n)
        return _band_block_density(n, *blocks(block), lo, hi)

    @property
    def cost(self) -> str:
        if self.lo is None or self.hi is None:
            return "n²"
        return "nw"

    def __repr__(self) -> str:
        if self.lo == 0 and self.hi is None:
            return "causal()"
        if self.lo is not None and self.hi is not None and self.lo == -self.hi and self.hi >= 0:
            return f"local({self.hi})"  # (band(1, -1), empty, is no window)
        return f"band({self.lo}, {self.hi})"


# Of plain ints only: inside torch.compile evaluated once when tracing (Dynamo would trace
# the numpy as data-dependent tensor code), also for a band built in the compiled function.
@torch.compiler.assume_constant_result
def _band_block_density(n: int, bq: int, bk: int, lo: int, hi: int) -> float:
    count, _, full, _ = _band_runs(n, bq, bk, lo, hi)
    return float(count.sum() + full.sum()) / (math.ceil(n / bq) * math.ceil(n / bk))


def _band_runs(n: int, bq: int, bk: int, lo: int, hi: int) -> list[np.ndarray]:
    """(partial count, partial indices, full count, full indices) per query block, int32, of the
    band ``lo <= i - j <= hi`` (|lo|, |hi| <= n) tiled into bq x bk blocks.

    In numpy: these are a few dozen ops on arrays of ~n/128 elements, where numpy's per-op
    cost (~1 µs) is a fraction of torch's dispatch; this runs for every new (pattern, n)."""
    nqb, nkb = math.ceil(n / bq), math.ceil(n / bk)
    qs = np.arange(nqb, dtype=np.int64) * bq
    qe = np.minimum(qs + bq, n)
    j0, j1 = np.maximum(qs - hi, 0), np.minimum(qe - 1 - lo, n - 1)  # keys of the block
    first = j0 // bk
    empty = (j0 > j1) | (lo > hi)
    last = np.where(empty, first - 1, j1 // bk)  # the run [first, last] (maybe empty)
    # full: the whole unclipped tile inside the band, i.e. qe - 1 - ks <= hi, qs - ke + 1 >= lo
    f0 = -((hi - qe + 1) // bk)  # ceil((qe - 1 - hi) / bk)
    f1 = np.minimum((qs - lo - bk + 1) // bk, n // bk - 1)
    f1 = np.where(qe - qs < bq, f0 - 1, f1)  # a clipped query block has no full tile
    fa = np.minimum(np.maximum(f0, first), last + 1)
    fb = np.minimum(np.maximum(f1, fa - 1), last)
    left, right = fa - first, last - fb  # partial blocks before and after the full run
    width = min(nkb, max(0, math.ceil((bq + hi - lo) / bk)) + 1)  # the longest run
    t = np.arange(width)
    idx = np.where(t < left[:, None], first[:, None] + t, fb[:, None] + 1 + t - left[:, None])
    full_idx = fa[:, None] + t
    # entries past a row's count are unused; keep them in range (all entries are >= 0)
    out = [left + right, np.minimum(idx, nkb - 1), fb - fa + 1, np.minimum(full_idx, nkb - 1)]
    return [a.astype(np.int32) for a in out]


def causal() -> Band:
    """Each query attends to itself and earlier keys: ``j <= i``. O(n²) (n(n+1)/2 pairs)."""
    return Band(0, None)


def local(w: int) -> Band:
    """Sliding window ``|i - j| <= w`` (2w + 1 keys per query away from the edges). O(nw)."""
    if not isinstance(w, int) or isinstance(w, bool) or not 0 <= w <= LIMIT:
        raise ValueError(f"local: window w must be an int in [0, 2**62], got {w!r}")
    return Band(-w, w)


def band(lo: int | None, hi: int | None) -> Band:
    """Keys with ``lo <= i - j <= hi`` (None = unbounded); ``band(0, w)`` is a causal window."""
    return Band(lo, hi)
