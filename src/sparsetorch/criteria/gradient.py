"""Gradient criteria.

* ``gradient``: |g|, the gradient magnitude (what RigL grows on).
* ``taylor``: |w * g|, the first-order Taylor estimate of the loss change when a weight is
  removed (Molchanov et al. 2019); on a batch at initialisation it is SNIP's connection
  sensitivity (Lee et al. 2019, "SNIP: Single-shot Network Pruning based on Connection
  Sensitivity"), whose normalisation by the sum does not change the ranking.
"""

from __future__ import annotations

import torch

from sparsetorch.criteria.base import ElementwiseCriterion, score_dtype


class Gradient(ElementwiseCriterion):
    name = "gradient"
    needs_grad = True

    def score(self, weight, grad, generator) -> torch.Tensor:
        return grad.to(score_dtype(weight)).abs()


class Taylor(ElementwiseCriterion):
    name = "taylor"
    needs_grad = True

    def score(self, weight, grad, generator) -> torch.Tensor:
        dtype = score_dtype(weight)
        return (weight.to(dtype) * grad.to(dtype)).abs()
