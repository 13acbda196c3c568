"""SNIP at initialisation (Lee, Ajanthan & Torr, ICLR 2019, arXiv:1810.02340).

1. sample a mini-batch; 2. connection sensitivity |g * w| of every prunable weight
(sparsetorch.criteria.snip); 3. keep the top (1 - sparsity) of them, globally by default;
4. train the surviving weights with the mask fixed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from torch import nn

from sparsetorch.algorithms.at_init.base import prune_with_scores
from sparsetorch.criteria._batches import Batch, LossFn
from sparsetorch.criteria.snip import snip_scores
from sparsetorch.masking import prunable_parameters
from sparsetorch.masking.prunable import FilterFn


def snip(
    model: nn.Module,
    batches: Batch | Iterable[Batch],
    sparsity: float | None,
    *,
    pattern: Any = "unstructured",
    distribution: Any = "global",
    loss_fn: LossFn | None = None,
    exclude: Iterable[str] | None = None,
    filter_fn: FilterFn | None = None,
) -> nn.Module:
    """Prune ``model`` in place by SNIP scores on ``batches`` (one ``(x, y)`` or several);
    returns it. Raises ValueError (model untouched) when a layer would keep no weight."""
    names = [full for full, _, _ in prunable_parameters(model, exclude, filter_fn)]
    scores = snip_scores(model, names, batches, loss_fn)
    return prune_with_scores(
        model,
        scores,
        sparsity,
        method="snip",
        pattern=pattern,
        distribution=distribution,
        exclude=exclude,
        filter_fn=filter_fn,
    )
