"""Uniform: every layer gets the same density."""

from __future__ import annotations

from collections.abc import Mapping

from sparsetorch.distributions.base import Distribution, Shape, caps, check_density


class Uniform(Distribution):
    name = "uniform"

    def densities(
        self,
        shapes: Mapping[str, Shape],
        density: float,
        max_density: Mapping[str, float] | None = None,
    ) -> dict[str, float]:
        check_density(density)
        for name, cap in caps(shapes, max_density).items():
            if density > cap:
                raise ValueError(
                    f"uniform density {density:.6g} is above the maximum {cap:.4g} of layer {name!r} "
                    "(its pattern's limit, or what is left after earlier pruning)"
                )
        return {name: float(density) for name in shapes}
