"""GraSP at initialisation (Wang, Zhang & Grosse, ICLR 2020, arXiv:2002.07376).

Algorithm 1 of the paper: 1. sample data; 2. S(-theta) = -theta * (H g) by a Hessian-vector
product; 3. remove the weights with the largest S (keep S below its (1 - p) percentile). Our
scores are "higher = keep", so the criterion (sparsetorch.criteria.grasp) returns
theta * (H g) = -S and its top-k is the paper's mask.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from torch import nn

from sparsetorch.algorithms.at_init.base import prune_with_scores
from sparsetorch.criteria._batches import Batch, LossFn
from sparsetorch.criteria.grasp import DEFAULT_TEMPERATURE, grasp_scores
from sparsetorch.masking import prunable_parameters
from sparsetorch.masking.prunable import FilterFn


def grasp(
    model: nn.Module,
    batches: Batch | Iterable[Batch],
    sparsity: float | None,
    *,
    pattern: Any = "unstructured",
    distribution: Any = "global",
    temperature: float = DEFAULT_TEMPERATURE,
    loss_fn: LossFn | None = None,
    exclude: Iterable[str] | None = None,
    filter_fn: FilterFn | None = None,
) -> nn.Module:
    """Prune ``model`` in place by GraSP scores on ``batches``; returns it. Raises ValueError
    (model untouched) when a layer would keep no weight."""
    names = [full for full, _, _ in prunable_parameters(model, exclude, filter_fn)]
    scores = grasp_scores(model, names, batches, loss_fn, temperature)
    return prune_with_scores(
        model,
        scores,
        sparsity,
        method="grasp",
        pattern=pattern,
        distribution=distribution,
        exclude=exclude,
        filter_fn=filter_fn,
    )
