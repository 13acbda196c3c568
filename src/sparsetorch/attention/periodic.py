"""Periodic patterns: strided (Child et al. 2019) and dilated (Beltagy et al. 2020) attention.

Child et al., "Generating Long Sequences with Sparse Transformers" (2019), factorise attention
into two heads: A(1) = {j : i - l <= j <= i} (a causal window) and A(2) =
{j : (i - j) mod l = 0} (every l-th key). ``strided(k)`` is A(2) with l = k, without the
causal cut, so it composes: the paper's strided pattern is ``causal() & (local(k) | strided(k))``.
O(n²/k).

Longformer's dilated sliding window (Beltagy et al. 2020) keeps w keys on each side spaced d
apart: ``|i - j| <= w·d`` and ``d | (i - j)``; ``dilated(w, 1) == local(w)``. O(nw).
"""

from __future__ import annotations

from sparsetorch.attention.counting import congruent, dilated_band
from sparsetorch.attention.pattern import AttentionPattern, Bounds, Grid, MaskFn


def _positive(name: str, what: str, value: object, minimum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name}: {what} must be an int >= {minimum}, got {value!r}")
    return value


class Strided(AttentionPattern):
    def __init__(self, k: int) -> None:
        self.k = _positive("strided", "stride k", k, 1)

    def fn(self, n: int, device=None) -> MaskFn:
        k = self.k
        # q % k == kv % k, not (q - kv) % k == 0: torch 2.13's CPU FlexAttention code
        # generator emits uncompilable C++ for the latter. Same set (indices are >= 0).
        return lambda q, kv: q % k == kv % k

    def bounds(self, grid: Grid) -> Bounds:
        count = congruent(grid.qs, grid.qe, grid.ks, grid.ke, self.k)
        return count, count

    def key(self) -> tuple:
        return (self.k,)

    cost = "n²/k"

    def __repr__(self) -> str:
        return f"strided({self.k})"


class Dilated(AttentionPattern):
    def __init__(self, w: int, d: int) -> None:
        self.w = _positive("dilated", "window w", w, 0)
        self.d = _positive("dilated", "dilation d", d, 1)

    def fn(self, n: int, device=None) -> MaskFn:
        reach, d = self.w * self.d, self.d

        def dilated(q, kv):
            diff = q - kv
            return (diff.abs() <= reach) & (q % d == kv % d)

        return dilated

    def bounds(self, grid: Grid) -> Bounds:
        count = dilated_band(grid.qs, grid.qe, grid.ks, grid.ke, self.w, self.d)
        return count, count

    def key(self) -> tuple:
        return (self.w, self.d)

    cost = "nw"

    def __repr__(self) -> str:
        return f"dilated({self.w}, {self.d})"


def strided(k: int) -> Strided:
    """Keys at distances that are multiples of k: ``(i - j) mod k == 0``. O(n²/k)."""
    return Strided(k)


def dilated(w: int, d: int) -> Dilated:
    """w keys on each side, d apart: ``|i - j| <= w·d`` and ``d | (i - j)``. O(nw)."""
    return Dilated(w, d)
