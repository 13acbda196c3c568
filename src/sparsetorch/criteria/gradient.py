"""Gradient criteria.

* ``gradient``: |g|, the gradient magnitude (what RigL grows on).
* ``taylor``: |w * g|, the first-order Taylor estimate of the loss change when a weight is
  removed (Molchanov et al., ICLR 2017; per weight, Molchanov et al., CVPR 2019). It is SNIP's
  connection sensitivity (Lee et al., ICLR 2019), whose normalisation by the sum changes no
  ranking, so ``taylor`` and ``snip`` are one score: on a batch ``taylor`` *is*
  ``snip_scores`` (side-effect-free gradients from ``criteria/_batches.py``); without one it
  applies the same :func:`~sparsetorch.criteria.snip.saliency` to the ``.grad`` already there.
"""

from __future__ import annotations

import torch

from sparsetorch.criteria.base import ElementwiseCriterion, score_dtype
from sparsetorch.criteria.snip import saliency, snip_scores


class Gradient(ElementwiseCriterion):
    name = "gradient"
    needs_grad = True

    def score(self, weight, grad, generator) -> torch.Tensor:
        return grad.to(score_dtype(weight)).abs()


class Taylor(ElementwiseCriterion):
    name = "taylor"
    needs_grad = True

    def scores(self, model, names, *, batch=None, loss_fn=None, generator=None):
        if batch is None:  # the .grad of the caller's own backward()
            return super().scores(model, names, loss_fn=loss_fn, generator=generator)
        return snip_scores(model, names, batch, loss_fn)

    def score(self, weight, grad, generator) -> torch.Tensor:
        return saliency(weight, grad)
