"""Criteria: scores (higher = keep). ``CRITERIA.build("magnitude")`` etc.

================  ==============================================  ==================
``"magnitude"``   |w|                                             :class:`Magnitude`
``"random"``      uniform noise from ``generator``                :class:`Random`
``"gradient"``    |g|                                             :class:`Gradient`
``"taylor"``      |w * g| (first-order Taylor; SNIP at init)      :class:`Taylor`
``"snip"``        |w * g| on data batches, side-effect free       :class:`SNIP`
``"grasp"``       w * (H g) (GraSP, keep-high sign)               :class:`GraSP`
``"synflow"``     |w * dR/dw|, one data-free SynFlow pass         :class:`SynFlow`
================  ==============================================  ==================

Add a criterion by subclassing :class:`Criterion` (or :class:`ElementwiseCriterion`) and
registering it: ``CRITERIA.register("snip")(SNIP)``.
"""

from __future__ import annotations

from sparsetorch._registry import Registry
from sparsetorch.criteria.base import Criterion, ElementwiseCriterion, gradients, parameters
from sparsetorch.criteria.gradient import Gradient, Taylor
from sparsetorch.criteria.grasp import GraSP
from sparsetorch.criteria.magnitude import Magnitude
from sparsetorch.criteria.random import Random
from sparsetorch.criteria.snip import SNIP
from sparsetorch.criteria.synflow import SynFlow

CRITERIA: Registry[Criterion] = Registry("criterion")
CRITERIA.register("magnitude")(Magnitude)
CRITERIA.register("random")(Random)
CRITERIA.register("gradient")(Gradient)
CRITERIA.register("taylor")(Taylor)
CRITERIA.register("snip")(SNIP)
CRITERIA.register("grasp")(GraSP)
CRITERIA.register("synflow")(SynFlow)


def get(spec: str | Criterion) -> Criterion:
    """A criterion from its name (or a Criterion, returned as is)."""
    criterion = CRITERIA.build(spec)
    if not isinstance(criterion, Criterion):
        raise TypeError(f"criterion must be a string or a Criterion, got {type(spec).__name__}")
    return criterion


__all__ = [
    "CRITERIA",
    "SNIP",
    "Criterion",
    "ElementwiseCriterion",
    "GraSP",
    "Gradient",
    "Magnitude",
    "Random",
    "SynFlow",
    "Taylor",
    "get",
    "gradients",
    "parameters",
]
