"""Iterative SynFlow (Tanaka, Kunin, Yamins & Ganguli, NeurIPS 2020, arXiv:2006.05467).

Algorithm 1 of the paper, data-free:

    for k in 1..n:
        scores = |dR/dw * w| on the linearised network (|w|, all-ones input)
        keep the top density^(k/n) of the weights (cumulative: pruned weights stay pruned)

Re-scoring after each small step is what avoids layer collapse: a layer that loses weights
gains synaptic flow per remaining weight (flow is conserved per layer), so it is pruned less
in the next step. The weights themselves are never changed by scoring (the linearised network
is a float64 copy); only the masks are. With a pattern of fixed density f (N:M) the schedule
runs from f to the target: f * (density/f)^(k/n).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn

from sparsetorch._checks import is_real
from sparsetorch.algorithms.at_init.base import check_no_collapse, check_positive_int
from sparsetorch.algorithms.config import DEFAULT_ITERATIONS
from sparsetorch.criteria.synflow import synflow_scores, warn_flowless
from sparsetorch.masking import apply_masks, get_masks, prunable_parameters
from sparsetorch.masking.prunable import FilterFn
from sparsetorch.patterns import get as get_pattern
from sparsetorch.pruning import compute_masks, refuse_sharded, warn_left_dense


def exponential_densities(density: float, iterations: int, start: float = 1.0) -> list[float]:
    """``start * (density/start)^(k/n)`` for k = 1..n; the last is ``density`` exactly."""
    check_positive_int("iterations", iterations)
    if not 0.0 < density <= start <= 1.0:
        raise ValueError(f"need 0 < density <= start <= 1, got density={density}, start={start}")
    ratio = density / start
    out = [start * ratio ** (k / iterations) for k in range(1, iterations)]
    return [*out, density]


def synflow(
    model: nn.Module,
    input_shape: Sequence[int] | None,
    sparsity: float,
    *,
    inputs: Any = None,
    iterations: int = DEFAULT_ITERATIONS,
    pattern: Any = "unstructured",
    distribution: Any = "global",
    dtype: torch.dtype = torch.float64,
    exclude: Iterable[str] | None = None,
    filter_fn: FilterFn | None = None,
) -> nn.Module:
    """Prune ``model`` in place by iterative SynFlow (inputs of ``input_shape``, one example
    without the batch dim; or ``inputs``, a batch's model inputs: a tensor, a tuple or a dict,
    e.g. ``{"input_ids": ids}``, see ``criteria.synflow``); returns it. The iterations run on
    a copy, so the model is untouched when a check fails."""
    if not is_real(sparsity):
        raise TypeError(f"sparsity must be a float in [0, 1), got {sparsity!r}")
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
    sparsity = float(sparsity)
    start = get_pattern(pattern).fixed_density or 1.0
    densities = exponential_densities(1.0 - sparsity, iterations, start=min(start, 1.0))
    refuse_sharded(model.parameters(), "synflow")  # FSDP cannot deepcopy the model either
    work = copy.deepcopy(model)
    names = [full for full, _, _ in prunable_parameters(work, exclude, filter_fn)]
    for k, density in enumerate(densities, start=1):
        scores = synflow_scores(work, names, input_shape, dtype, inputs=inputs)
        if k == 1:  # before any pruning: a layer without flow now never gets any
            warn_flowless(scores)
        masks = compute_masks(
            work,
            sparsity if k == len(densities) else 1.0 - density,
            pattern=pattern,
            distribution=distribution,
            scores=scores,
            exclude=exclude,
            filter_fn=filter_fn,
            min_layer_density=0,
            indivisible="partial",
        )
        apply_masks(work, masks)
    final = {n: m for n, m in get_masks(work).items() if n in set(names)}
    check_no_collapse(final, "synflow", sparsity, distribution)
    found = prunable_parameters(model, exclude, filter_fn)
    warn_left_dense(model, found, pattern, "synflow", stacklevel=3)
    return apply_masks(model, final)
