"""SNIP at initialisation (Lee, Ajanthan & Torr, ICLR 2019, arXiv:1810.02340).

1. sample a mini-batch; 2. connection sensitivity |g * w| of every prunable weight
(sparsetorch.criteria.snip); 3. keep the top (1 - sparsity) of them, globally by default;
4. train the surviving weights with the mask fixed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from torch import nn

from sparsetorch.algorithms import METHODS
from sparsetorch.algorithms.at_init.base import (
    AtInitHook,
    FilterFn,
    check_positive_int,
    prune_with_scores,
    scoring_batches,
)
from sparsetorch.criteria._batches import Batch, LossFn
from sparsetorch.criteria.snip import snip_scores
from sparsetorch.masks import prunable_parameters


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


@METHODS.register("snip")
class SNIPHook(AtInitHook):
    """``--method snip``; option ``batches`` (default 1): mini-batches scored."""

    method = "snip"
    defaults: ClassVar[dict[str, Any]] = {"batches": 1}

    def prune(self, ctx) -> None:
        n = check_positive_int("batches", self.options["batches"])
        snip(
            ctx.model,
            scoring_batches(ctx, n),
            self.sparsity,
            pattern=self.pattern,
            distribution=self.distribution,
        )
