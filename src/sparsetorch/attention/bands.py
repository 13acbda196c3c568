"""Diagonal bands: ``lo <= i - j <= hi``. Causal, local (sliding window) and their meet.

``causal()`` is ``band(0, None)`` (keys up to the query), ``local(w)`` is ``band(-w, w)``
(``|i - j| <= w``, the tutorial's local attention, cost O(nw)). Bands are closed under ``&``
and under ``|`` when they touch, so ``causal() & local(w)`` is the single band ``band(0, w)``
(a causal sliding window) and keeps exact counts.
"""

from __future__ import annotations

from sparsetorch.attention.counting import in_band
from sparsetorch.attention.pattern import AttentionPattern, Bounds, Grid, MaskFn


def _int_or_none(name: str, value: object) -> int | None:
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise TypeError(f"{name} must be an int or None, got {type(value).__name__}")


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

    @property
    def cost(self) -> str:
        if self.lo is None or self.hi is None:
            return "n²"
        return "nw"

    def __repr__(self) -> str:
        if self.lo == 0 and self.hi is None:
            return "causal()"
        if self.lo is not None and self.hi is not None and self.lo == -self.hi:
            return f"local({self.hi})"
        return f"band({self.lo}, {self.hi})"


def causal() -> Band:
    """Each query attends to itself and earlier keys: ``j <= i``. O(n²) (n(n+1)/2 pairs)."""
    return Band(0, None)


def local(w: int) -> Band:
    """Sliding window ``|i - j| <= w`` (2w + 1 keys per query away from the edges). O(nw)."""
    if not isinstance(w, int) or isinstance(w, bool) or w < 0:
        raise ValueError(f"local: window w must be an int >= 0, got {w!r}")
    return Band(-w, w)


def band(lo: int | None, hi: int | None) -> Band:
    """Keys with ``lo <= i - j <= hi`` (None = unbounded); ``band(0, w)`` is a causal window."""
    return Band(lo, hi)
