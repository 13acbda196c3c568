"""Erdos-Renyi-Kernel (Evci et al. 2020, "Rigging the Lottery: Making All Tickets Winners").

A layer's density is proportional to ``sum(shape) / prod(shape)`` (``(out + in + kh + kw) /
(out * in * kh * kw)`` for a conv, ``(out + in) / (out * in)`` for a Linear), scaled by one
factor ``eps`` so that the kept weights total exactly ``density`` times all weights. Layers whose
density would exceed their cap (1, or a pattern's maximum) are set to the cap and ``eps`` is
solved again over the others, until no layer exceeds its cap.
"""

from __future__ import annotations

from collections.abc import Mapping

from sparsetorch.distributions.base import (
    Distribution,
    Shape,
    caps,
    check_density,
    fill_under_caps,
    numel,
)


def erk_densities(
    shapes: Mapping[str, Shape], density: float, max_density: Mapping[str, float] | None = None
) -> dict[str, float]:
    density = check_density(density)
    if not shapes:
        raise ValueError("shapes must name at least one layer")
    raw = {name: sum(int(d) for d in shape) / numel(shape) for name, shape in shapes.items()}
    return fill_under_caps(shapes, density, raw, caps(shapes, max_density))


class ERK(Distribution):
    name = "erk"

    def densities(
        self,
        shapes: Mapping[str, Shape],
        density: float,
        max_density: Mapping[str, float] | None = None,
    ) -> dict[str, float]:
        return erk_densities(shapes, density, max_density)
