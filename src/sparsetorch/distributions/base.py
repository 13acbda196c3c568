"""The distribution contract: how one global density is spread over layers.

``densities(shapes, density, max_density=None) -> {name: density}`` for per-layer
distributions; the kept weights sum to ``density`` times the total (in real numbers; ``prune``
then rounds to whole weights). ``max_density`` caps layers (1 by default; a pattern's maximum,
e.g. 0.5 for 2:4). A distribution with ``is_global = True`` has no per-layer densities: the
layers share one score threshold (``sparsetorch.selection.global_topk_masks``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

Shape = Sequence[int]


def numel(shape: Shape) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def check_density(density: float) -> None:
    if isinstance(density, bool) or not isinstance(density, int | float):
        raise TypeError(f"density must be a float in [0, 1], got {density!r}")
    if not 0.0 <= density <= 1.0:
        raise ValueError(f"density must be in [0, 1], got {density}")


def caps(shapes: Mapping[str, Shape], max_density: Mapping[str, float] | None) -> dict[str, float]:
    """Per-layer density caps (1 where not given)."""
    given = dict(max_density or {})
    unknown = sorted(set(given) - set(shapes))
    if unknown:
        raise ValueError(f"max_density names layers not in shapes: {unknown}")
    return {name: float(given.get(name, 1.0)) for name in shapes}


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
