"""Magnitude: |w|. The classic criterion (Han et al. 2015; Zhu & Gupta 2017; IMP)."""

from __future__ import annotations

import torch

from sparsetorch.criteria.base import ElementwiseCriterion, score_dtype


class Magnitude(ElementwiseCriterion):
    name = "magnitude"

    def score(self, weight, grad, generator) -> torch.Tensor:
        return weight.to(score_dtype(weight)).abs()
