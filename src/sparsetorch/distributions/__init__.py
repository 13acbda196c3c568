"""Distributions: how a global density is spread over layers. ``DISTRIBUTIONS.build("erk")``.

============  ======================================================  ================
``"uniform"``  every layer the same density                           :class:`Uniform`
``"erk"``      Erdos-Renyi-Kernel, capped at 1 with the excess spread  :class:`ERK`
``"global"``   one score threshold across layers (``is_global``)       :class:`Global`
============  ======================================================  ================
"""

from __future__ import annotations

from sparsetorch._registry import Registry
from sparsetorch.distributions.base import Distribution
from sparsetorch.distributions.erk import ERK, erk_densities
from sparsetorch.distributions.global_threshold import Global
from sparsetorch.distributions.uniform import Uniform

DISTRIBUTIONS: Registry[Distribution] = Registry("distribution")
DISTRIBUTIONS.register("uniform")(Uniform)
DISTRIBUTIONS.register("erk")(ERK)
DISTRIBUTIONS.register("global")(Global)


def get(spec: str | Distribution) -> Distribution:
    """A distribution from its name (or a Distribution, returned as is)."""
    distribution = DISTRIBUTIONS.build(spec)
    if not isinstance(distribution, Distribution):
        raise TypeError(
            f"distribution must be a string or a Distribution, got {type(spec).__name__}"
        )
    return distribution


__all__ = ["DISTRIBUTIONS", "ERK", "Distribution", "Global", "Uniform", "erk_densities", "get"]
