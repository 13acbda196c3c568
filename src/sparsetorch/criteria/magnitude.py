"""Magnitude: |w|. The classic criterion (Han et al. 2015; Zhu & Gupta 2017; IMP)."""

from __future__ import annotations

import torch

from sparsetorch.criteria.base import ElementwiseCriterion, score_dtype


class Magnitude(ElementwiseCriterion):
    name = "magnitude"
    lazy = True  # |w| is read afresh, layer by layer: no copy of every weight's score

    def score(self, weight, grad, generator) -> torch.Tensor:
        return weight.to(score_dtype(weight)).abs()
