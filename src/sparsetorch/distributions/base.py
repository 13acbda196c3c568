"""The distribution contract: how one global density is spread over layers.

``densities(shapes, density, max_density=None) -> {name: density}`` for per-layer
distributions; the kept weights sum to ``density`` times the total (in real numbers; ``prune``
then rounds to whole weights). ``max_density`` caps layers (1 by default; a pattern's maximum,
e.g. 0.5 for 2:4; or, in cumulative pruning, what a layer has left): a capped layer keeps its
cap and the other layers share its excess (:func:`fill_under_caps`), so the total stays exact. A distribution with ``is_global = True`` has no per-layer densities: the
layers share one score threshold (``sparsetorch.selection.global_topk_masks``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sparsetorch._checks import is_real

Shape = Sequence[int]


def numel(shape: Shape) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def check_density(density: float) -> float:
    """``density`` as a float in [0, 1] (numpy scalars too); one clear error otherwise."""
    if not is_real(density):
        raise TypeError(f"density must be a float in [0, 1], got {density!r}")
    if not 0.0 <= density <= 1.0:
        raise ValueError(f"density must be in [0, 1], got {density}")
    return float(density)


def caps(shapes: Mapping[str, Shape], max_density: Mapping[str, float] | None) -> dict[str, float]:
    """Per-layer density caps (1 where not given)."""
    given = dict(max_density or {})
    unknown = sorted(set(given) - set(shapes))
    if unknown:
        raise ValueError(f"max_density names layers not in shapes: {unknown}")
    return {name: float(given.get(name, 1.0)) for name in shapes}


def fill_under_caps(
    shapes: Mapping[str, Shape], density: float, raw: Mapping[str, float], cap: Mapping[str, float]
) -> dict[str, float]:
    """Densities ``eps * raw[n]`` with one factor ``eps`` such that the kept weights total
    ``density`` times all weights; a layer that would exceed its cap is set to the cap and
    ``eps`` is solved again over the others, until none exceeds its cap (water-filling).
    Raises ValueError when even every layer at its cap keeps too few weights."""
    sizes = {name: numel(shape) for name, shape in shapes.items()}
    total = sum(sizes.values())
    if density * total > sum(cap[n] * sizes[n] for n in shapes) * (1 + 1e-12):
        raise ValueError(f"density {density} is above what the layers' caps allow")
    capped: set[str] = set()
    while True:
        free = [n for n in shapes if n not in capped]
        budget = density * total - sum(cap[n] * sizes[n] for n in capped)
        divisor = sum(raw[n] * sizes[n] for n in free)
        eps = budget / divisor if divisor else 0.0
        over = {n for n in free if eps * raw[n] > cap[n]}
        if not over:
            break
        # capping a layer frees budget, so eps only grows: every layer over now stays over
        capped |= over
    return {n: cap[n] if n in capped else eps * raw[n] for n in shapes}


class Distribution:
    name: str = "distribution"
    is_global: bool = False

    def densities(
        self,
        shapes: Mapping[str, Shape],
        density: float,
        max_density: Mapping[str, float] | None = None,
    ) -> dict[str, float]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
