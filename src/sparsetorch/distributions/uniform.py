"""Uniform: every layer gets the same density.

A layer capped below it (by its pattern, e.g. 0.5 for 2:4, or, in cumulative pruning, by the
weights it has left) keeps its cap, and the other layers share the excess equally, so the total
stays ``density`` times all weights (:func:`~sparsetorch.distributions.base.fill_under_caps`).
"""

from __future__ import annotations

from collections.abc import Mapping

from sparsetorch.distributions.base import (
    Distribution,
    Shape,
    caps,
    check_density,
    fill_under_caps,
)


class Uniform(Distribution):
    name = "uniform"

    def densities(
        self,
        shapes: Mapping[str, Shape],
        density: float,
        max_density: Mapping[str, float] | None = None,
    ) -> dict[str, float]:
        density = check_density(density)
        if not shapes:
            raise ValueError("shapes must name at least one layer")
        cap = caps(shapes, max_density)
        if all(density <= c for c in cap.values()):
            return {name: float(density) for name in shapes}  # exactly, no rounding
        try:
            return fill_under_caps(shapes, density, dict.fromkeys(shapes, 1.0), cap)
        except ValueError:
            raise ValueError(
                f"uniform density {density:.6g} is above what the layers allow even at their "
                f"maxima ({min(cap.values()):.4g} to {max(cap.values()):.4g}: their pattern's "
                "limit, or what is left after earlier pruning)"
            ) from None
