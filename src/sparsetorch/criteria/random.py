"""Random: i.i.d. uniform scores, so that the top-k is a uniformly random mask (the baseline
of every pruning paper). Same generator state, same scores, bitwise."""

from __future__ import annotations

import torch

from sparsetorch.criteria.base import ElementwiseCriterion, score_dtype


class Random(ElementwiseCriterion):
    name = "random"

    def score(self, weight, grad, generator) -> torch.Tensor:
        device = generator.device if generator is not None else weight.device
        noise = torch.rand(weight.shape, generator=generator, device=device)
        return noise.to(device=weight.device, dtype=score_dtype(weight))
