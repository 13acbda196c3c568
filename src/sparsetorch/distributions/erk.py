"""Erdos-Renyi-Kernel (Evci et al. 2020, "Rigging the Lottery: Making All Tickets Winners").

A layer's density is proportional to ``sum(shape) / prod(shape)`` (``(out + in + kh + kw) /
(out * in * kh * kw)`` for a conv, ``(out + in) / (out * in)`` for a Linear), scaled by one
factor ``eps`` so that the kept weights total exactly ``density`` times all weights. Layers whose
density would exceed their cap (1, or a pattern's maximum) are set to the cap and ``eps`` is
solved again over the others, until no layer exceeds its cap.
"""

from __future__ import annotations

from collections.abc import Mapping

from sparsetorch.distributions.base import Distribution, Shape, caps, check_density, numel


def erk_densities(
    shapes: Mapping[str, Shape], density: float, max_density: Mapping[str, float] | None = None
) -> dict[str, float]:
    check_density(density)
    if not shapes:
        raise ValueError("shapes must name at least one layer")
    cap = caps(shapes, max_density)
    sizes = {name: numel(shape) for name, shape in shapes.items()}
    total = sum(sizes.values())
    if density * total > sum(cap[n] * sizes[n] for n in shapes) * (1 + 1e-12):
        raise ValueError(f"density {density} is above what the layers' caps allow")
    raw = {name: sum(int(d) for d in shape) / sizes[name] for name, shape in shapes.items()}
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


class ERK(Distribution):
    name = "erk"

    def densities(
        self,
        shapes: Mapping[str, Shape],
        density: float,
        max_density: Mapping[str, float] | None = None,
    ) -> dict[str, float]:
        return erk_densities(shapes, density, max_density)
