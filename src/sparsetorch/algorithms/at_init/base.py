"""What the at-initialisation methods share: scores -> masks on the four axes, with the layer
collapse check."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

from sparsetorch._checks import is_int
from sparsetorch.masking import apply_masks, prunable_parameters
from sparsetorch.masking.prunable import FilterFn
from sparsetorch.pruning import compute_masks, warn_left_dense


def empty_layers(masks: Mapping[str, torch.Tensor]) -> list[str]:
    """Names of the layers whose mask keeps no weight (layer collapse)."""
    return [name for name, mask in masks.items() if not bool(mask.any())]


def check_no_collapse(
    masks: Mapping[str, torch.Tensor], method: str, sparsity: Any, distribution: Any
) -> None:
    empty = empty_layers(masks)
    if empty:
        other = "" if method == "synflow" else ", or method 'synflow'"
        raise ValueError(
            f"{method}: sparsity {sparsity} with distribution {distribution!r} would empty "
            f"layer(s) {empty} (layer collapse: no weight kept, nothing flows through); use a "
            f"lower sparsity, distribution 'erk'{other}"
        )


def prune_with_scores(
    model: nn.Module,
    scores: Mapping[str, torch.Tensor],
    sparsity: float | None,
    *,
    method: str,
    pattern: Any = "unstructured",
    distribution: Any = "global",
    exclude: Iterable[str] | None = None,
    filter_fn: FilterFn | None = None,
) -> nn.Module:
    """Masks from ``scores`` on the pattern and distribution, checked for layer collapse, then
    attached (the model is untouched when any check fails)."""
    masks = compute_masks(
        model,
        sparsity,
        pattern=pattern,
        distribution=distribution,
        scores=scores,
        exclude=exclude,
        filter_fn=filter_fn,
        min_layer_density=0,  # as the papers: a collapsed layer is an error, raised below
        indivisible="partial",
    )
    check_no_collapse(masks, method, sparsity, distribution)
    found = prunable_parameters(model, exclude, filter_fn)
    warn_left_dense(model, found, pattern, method, stacklevel=4)  # the user -> snip -> here
    return apply_masks(model, masks)


def mask_seed(seed: int) -> int:
    """The seed of a run's random mask, derived from (never equal to) the run's seed: the
    initial weights come from ``torch.manual_seed(seed)``, and random scores drawn from the
    same stream would be a function of those weights."""
    digest = hashlib.sha256(f"sparsetorch.at_init.mask:{seed}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def check_positive_int(name: str, value: Any) -> int:
    if not is_int(value):
        raise TypeError(f"{name} must be an int >= 1, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value}")
    return int(value)
