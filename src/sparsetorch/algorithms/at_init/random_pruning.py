"""Random pruning at initialisation: the baseline every pruning-at-init paper compares with.

Uniform noise scores (criterion ``"random"``) under a per-layer distribution: ``"uniform"``
(every layer the same density) or ``"erk"`` (Erdos-Renyi-Kernel, Evci et al. 2020: small layers
denser). Same seed, same mask, bitwise.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from sparsetorch.algorithms.at_init.base import prune_with_scores
from sparsetorch.criteria import get as get_criterion
from sparsetorch.masking import prunable_parameters
from sparsetorch.masking.prunable import FilterFn


def random_prune(
    model: nn.Module,
    sparsity: float | None,
    *,
    generator: torch.Generator | int,
    pattern: Any = "unstructured",
    distribution: Any = "uniform",
    exclude: Iterable[str] | None = None,
    filter_fn: FilterFn | None = None,
) -> nn.Module:
    """Prune ``model`` in place at random (``generator``: a torch.Generator or an int seed);
    returns it."""
    if isinstance(generator, int) and not isinstance(generator, bool):
        generator = torch.Generator().manual_seed(generator)
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or an int seed, got {generator!r}")
    names = [full for full, _, _ in prunable_parameters(model, exclude, filter_fn)]
    scores = get_criterion("random").scores(model, names, generator=generator)
    return prune_with_scores(
        model,
        scores,
        sparsity,
        method="random",
        pattern=pattern,
        distribution=distribution,
        exclude=exclude,
        filter_fn=filter_fn,
    )
