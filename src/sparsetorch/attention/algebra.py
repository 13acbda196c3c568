"""Union, intersection and complement of attention patterns: ``|``, ``&``, ``~``.

Counts combine by the Fréchet bounds: for blocks of area A holding a and b allowed pairs,
``max(a, b) <= |A ∪ B| <= min(A, a + b)`` and ``max(0, a + b - A) <= |A ∩ B| <= min(a, b)``;
``|~A| = A - a``. These are exact whenever one side is empty or full — most blocks of real
patterns — and the few blocks they leave undecided are counted tile by tile.
Bands are merged on the way in (``causal() & local(w)`` becomes ``band(0, w)``).
"""

from __future__ import annotations

from sparsetorch.attention.bands import Band
from sparsetorch.attention.pattern import AttentionPattern, Bounds, Grid, MaskFn


def _unique(parts: list[AttentionPattern]) -> list[AttentionPattern]:
    out: list[AttentionPattern] = []
    for p in parts:
        if p not in out:
            out.append(p)
    return out


def _terms(parts: tuple[AttentionPattern, ...]) -> list[str]:
    return list(dict.fromkeys(p.cost for p in parts))


class Union(AttentionPattern):
    exact = False

    def __init__(self, parts: list[AttentionPattern]) -> None:
        self.parts = tuple(parts)

    def check(self, n: int) -> None:
        for p in self.parts:
            p.check(n)

    def fn(self, n: int, device=None) -> MaskFn:
        fns = [p.fn(n, device) for p in self.parts]

        def union(q, kv):
            allowed = fns[0](q, kv)
            for f in fns[1:]:
                allowed = allowed | f(q, kv)
            return allowed

        return union

    def bounds(self, grid: Grid) -> Bounds:
        lo, hi = self.parts[0].bounds(grid)
        for p in self.parts[1:]:
            plo, phi = p.bounds(grid)
            lo, hi = lo.maximum(plo), (hi + phi).minimum(grid.area)
        return lo, hi

    def key(self) -> tuple:
        return (frozenset(self.parts),)

    @property
    def cost(self) -> str:
        terms = _terms(self.parts)
        linear = [t[1:] for t in terms if t.startswith("n") and not t.startswith("n²")]
        rest = [t for t in terms if not (t.startswith("n") and not t.startswith("n²"))]
        if len(linear) > 1:
            rest.insert(0, f"n({' + '.join(linear)})")
        else:
            rest = [f"n{t}" for t in linear] + rest
        return " + ".join(rest)

    def __repr__(self) -> str:
        return " | ".join(repr(p) for p in self.parts)


class Intersection(AttentionPattern):
    exact = False

    def __init__(self, parts: list[AttentionPattern]) -> None:
        self.parts = tuple(parts)

    def check(self, n: int) -> None:
        for p in self.parts:
            p.check(n)

    def fn(self, n: int, device=None) -> MaskFn:
        fns = [p.fn(n, device) for p in self.parts]

        def intersection(q, kv):
            allowed = fns[0](q, kv)
            for f in fns[1:]:
                allowed = allowed & f(q, kv)
            return allowed

        return intersection

    def bounds(self, grid: Grid) -> Bounds:
        lo, hi = self.parts[0].bounds(grid)
        for p in self.parts[1:]:
            plo, phi = p.bounds(grid)
            lo, hi = (lo + plo - grid.area).clamp_min(0), hi.minimum(phi)
        return lo, hi

    def key(self) -> tuple:
        return (frozenset(self.parts),)

    @property
    def cost(self) -> str:
        terms = [t for t in _terms(self.parts) if t != "n²"] or ["n²"]  # causal halves
        return terms[0] if len(terms) == 1 else f"min({', '.join(terms)})"

    def __repr__(self) -> str:
        return " & ".join(f"({p!r})" if isinstance(p, Union) else repr(p) for p in self.parts)


class Complement(AttentionPattern):
    exact = False

    def __init__(self, part: AttentionPattern) -> None:
        self.part = part
        self.exact = part.exact

    def check(self, n: int) -> None:
        self.part.check(n)

    def fn(self, n: int, device=None) -> MaskFn:
        f = self.part.fn(n, device)
        return lambda q, kv: ~f(q, kv)

    def bounds(self, grid: Grid) -> Bounds:
        lo, hi = self.part.bounds(grid)
        return grid.area - hi, grid.area - lo

    def key(self) -> tuple:
        return (self.part,)

    cost = "n²"

    def __repr__(self) -> str:
        inner = repr(self.part)
        return f"~({inner})" if isinstance(self.part, Union | Intersection) else f"~{inner}"


def _merge_bands(bands: list[Band]) -> list[Band]:
    """Union of bands: touching or overlapping ones become one band."""
    inf = float("inf")
    spans = sorted(
        ((-inf if b.lo is None else b.lo), (inf if b.hi is None else b.hi)) for b in bands
    )
    merged: list[list[float]] = []
    for lo, hi in spans:
        if lo > hi:
            continue  # an empty band adds nothing
        if merged and lo <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    if not merged:
        return [bands[0]]  # all empty: keep one (still empty)
    return [
        Band(None if lo == -inf else int(lo), None if hi == inf else int(hi)) for lo, hi in merged
    ]


def union(a: AttentionPattern, b: AttentionPattern) -> AttentionPattern:
    parts: list[AttentionPattern] = []
    for p in (a, b):
        parts.extend(p.parts if isinstance(p, Union) else (p,))
    bands = [p for p in parts if isinstance(p, Band)]
    if len(bands) > 1:
        others = [p for p in parts if not isinstance(p, Band)]
        parts = _merge_bands(bands) + others
    parts = _unique(parts)
    return parts[0] if len(parts) == 1 else Union(parts)


def intersection(a: AttentionPattern, b: AttentionPattern) -> AttentionPattern:
    parts: list[AttentionPattern] = []
    for p in (a, b):
        parts.extend(p.parts if isinstance(p, Intersection) else (p,))
    bands = [p for p in parts if isinstance(p, Band)]
    if len(bands) > 1:
        los = [p.lo for p in bands if p.lo is not None]
        his = [p.hi for p in bands if p.hi is not None]
        meet = Band(max(los) if los else None, min(his) if his else None)
        parts = [meet] + [p for p in parts if not isinstance(p, Band)]
    parts = _unique(parts)
    return parts[0] if len(parts) == 1 else Intersection(parts)


def complement(a: AttentionPattern) -> AttentionPattern:
    if isinstance(a, Complement):
        return a.part
    if isinstance(a, Band) and (a.lo is None) != (a.hi is None):
        return Band(a.hi + 1, None) if a.lo is None else Band(None, a.lo - 1)
    return Complement(a)
