"""Patterns as disjoint periodic bands: the form the band kernel can run piece by piece.

A periodic band ``(lo, hi, s)`` holds the pairs with ``lo <= i - j <= hi`` and ``s | i - j``.
Bands are ``s = 1``, ``strided(k)`` is ``(-inf, inf, k)``, ``dilated(w, d)`` is
``(-w·d, w·d, d)``. Periodic bands are closed under ``&`` (bounds meet, periods take their
least common multiple), and ``&`` distributes over ``|``, so a pattern built from these with
``|`` and ``&`` is a union of periodic bands. :func:`pieces` rewrites that union as disjoint
pieces along the diagonal offset ``d = i - j``: between two consecutive bounds the same terms
hold; a term of period 1 covers its stretch, and terms whose periods are all multiples of the
smallest one cover the multiples of it. Sparse Transformer's strided pattern
``causal() & (local(w) | strided(k))`` becomes ``(0, w, 1)`` and ``(w + 1, inf, k)``.

Over the positions ``r, r + s, r + 2s, ...`` of one residue ``r``, a period-s piece is a plain
band ``ceil(lo / s) <= a - b <= floor(hi / s)`` in the positions' ranks ``a, b``: the band
kernel runs it on the sequence regrouped by residue (backends/bands.py), and softmax over the
union is the log-sum-exp merge of the pieces' outputs.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

from sparsetorch.attention.algebra import Intersection, Union
from sparsetorch.attention.bands import Band
from sparsetorch.attention.pattern import AttentionPattern
from sparsetorch.attention.periodic import Dilated, Strided

MAX_TERMS = 64  # terms of the expanded union before giving up (products of unions grow)


@dataclass(frozen=True)
class Piece:
    """The pairs with ``lo <= i - j <= hi`` and ``period | i - j`` (bounds within ±(n - 1))."""

    lo: int
    hi: int
    period: int

    def group_band(self) -> tuple[int, int]:
        """The band in the ranks of one residue's positions: ``lo' <= a - b <= hi'``."""
        return -((-self.lo) // self.period), self.hi // self.period


def _terms(pattern: AttentionPattern, n: int) -> list[tuple[int, int, int]] | None:
    """The pattern as a union of periodic bands (lo, hi, period) clipped to ±(n - 1); None if
    it holds another kind of pattern (tokens, random keys, blocks, complements)."""
    reach = max(n - 1, 0)
    if isinstance(pattern, Band):
        lo = -reach if pattern.lo is None else max(pattern.lo, -reach)
        hi = reach if pattern.hi is None else min(pattern.hi, reach)
        return [(lo, hi, 1)]
    if isinstance(pattern, Strided):
        return [(-reach, reach, pattern.k)]
    if isinstance(pattern, Dilated):
        r = min(pattern.w * pattern.d, reach)
        return [(-r, r, pattern.d)]
    if isinstance(pattern, Union | Intersection):
        parts = [_terms(p, n) for p in pattern.parts]
        if any(p is None for p in parts):
            return None
        if isinstance(pattern, Union):
            out = [t for p in parts for t in p]
        else:
            out = parts[0]
            for p in parts[1:]:
                out = [
                    (max(a[0], b[0]), min(a[1], b[1]), math.lcm(a[2], b[2])) for a in out for b in p
                ]
                out = [t for t in out if t[0] <= t[1]]
                if len(out) > MAX_TERMS:
                    return None
        return out if len(out) <= MAX_TERMS else None
    return None


def _covering_period(periods: list[int]) -> int | None:
    """The period of the union of the multiples of ``periods``, if that union is periodic in
    one: the smallest, when it divides every other; else None."""
    s = min(periods)
    return s if all(p % s == 0 for p in periods) else None


def pieces(pattern: AttentionPattern, n: int) -> list[Piece] | None:
    """``pattern`` at length ``n`` as disjoint periodic bands, ordered by offset; None when it
    is not a union of (periodic) bands or the multiples of two periods overlap in a way one
    period cannot express (``strided(2) | strided(3)``)."""
    terms = _terms(pattern, n)
    if terms is None:
        return None
    terms = [t for t in terms if t[0] <= t[1]]
    cuts = sorted({t[0] for t in terms} | {t[1] + 1 for t in terms})
    out: list[Piece] = []
    for a, b in itertools.pairwise(cuts):  # the stretch [a, b - 1]
        active = [t[2] for t in terms if t[0] <= a and b - 1 <= t[1]]
        if not active:
            continue
        period = _covering_period(active)
        if period is None:
            return None
        lo, hi = a, b - 1
        if period > 1:  # tighten to the multiples of the period (none: nothing here)
            lo, hi = -((-lo) // period) * period, (hi // period) * period
            if lo > hi:
                continue
        if out and out[-1].period == period and out[-1].hi + period >= lo:
            out[-1] = Piece(out[-1].lo, hi, period)  # continues the previous piece
        else:
            out.append(Piece(lo, hi, period))
    return out


__all__ = ["MAX_TERMS", "Piece", "pieces"]
