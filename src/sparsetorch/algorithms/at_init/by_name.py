"""The at-init methods by name, for callers that hold data and a shape but not a training run
(``sparsetorch prune --method snip``): ``prune_at_init("synflow", model, 0.98, ...)``."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from torch import nn

from sparsetorch._registry import Registry
from sparsetorch.algorithms.at_init.base import mask_seed
from sparsetorch.algorithms.at_init.grasp import grasp
from sparsetorch.algorithms.at_init.random_pruning import random_prune
from sparsetorch.algorithms.at_init.snip import snip
from sparsetorch.algorithms.at_init.synflow import synflow
from sparsetorch.criteria._batches import Batch
from sparsetorch.masking import take_over_torch_pruning

Pruner = Callable[..., nn.Module]
AT_INIT: Registry[Pruner] = Registry("at-init method")


@AT_INIT.register("snip")
def _snip() -> Pruner:
    return lambda model, sparsity, batch, input_shape, seed, **axes: snip(
        model, batch, sparsity, **axes
    )


@AT_INIT.register("grasp")
def _grasp() -> Pruner:
    return lambda model, sparsity, batch, input_shape, seed, **axes: grasp(
        model, batch, sparsity, **axes
    )


@AT_INIT.register("synflow")
def _synflow() -> Pruner:
    return lambda model, sparsity, batch, input_shape, seed, **axes: synflow(
        model, input_shape, sparsity, **axes
    )


@AT_INIT.register("random")
def _random() -> Pruner:
    return lambda model, sparsity, batch, input_shape, seed, **axes: random_prune(
        model, sparsity, generator=mask_seed(seed), **axes
    )


def prune_at_init(
    method: str,
    model: nn.Module,
    sparsity: float | None,
    *,
    batch: Batch | Iterable[Batch] | None = None,
    input_shape: Sequence[int] | None = None,
    seed: int = 0,
    pattern: Any = "unstructured",
    distribution: Any = "global",
    exclude: Iterable[str] | None = None,
) -> nn.Module:
    """Prune ``model`` in place with the named method (snip, grasp: ``batch``; synflow:
    ``input_shape``, 100 rounds; random: a mask seed derived from ``seed``); returns it."""
    pruner = AT_INIT.build(method)
    take_over_torch_pruning(model)  # torch.nn.utils.prune's masks stay pruned
    if method in ("snip", "grasp") and batch is None:
        raise ValueError(f"method {method!r} scores on data: pass batch=(inputs, targets)")
    if method == "synflow" and input_shape is None:
        raise ValueError("method 'synflow' needs input_shape (one example, no batch dim)")
    return pruner(
        model,
        sparsity,
        batch,
        input_shape,
        seed,
        pattern=pattern,
        distribution=distribution,
        exclude=exclude,
    )
