"""The masks of one IMP round, and the random masks of the random-pruning control.

Both go through the library's one pruner (``sparsetorch.pruning.compute_masks``: cumulative, so a
weight pruned in an earlier round stays pruned) or its one top-k selector; nothing here ranks
weights by itself.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from sparsetorch import patterns as _patterns
from sparsetorch.criteria import Random
from sparsetorch.lottery.rounds import sparsity_after
from sparsetorch.masking import prunable_parameters
from sparsetorch.pruning import compute_masks
from sparsetorch.selection import topk_mask

# IMP as the papers run it: no layer floor (a round that would empty a layer raises below) and
# N:M rows with a partial last group pruned too
_AS_PAPER = {"min_layer_density": 0, "indivisible": "partial"}


def ticket_masks(
    model: nn.Module,
    round_: int,
    rates: Mapping[str, float],
    pattern: str = "unstructured",
    scope: str = "layerwise",
) -> dict[str, torch.Tensor]:
    """Masks of round ``round_`` (>= 1) from the trained ``model`` of the round before (whose
    masks, if any, are attached): the largest-magnitude weights, ``(1 - rate) ** round_`` of
    each layer (``"layerwise"``) or of all layers together (``"global"``, one rate); a
    fixed-density pattern (N:M) keeps its full mask. Layers with rate 0 get no mask."""
    if round_ < 1:
        raise ValueError(f"round must be >= 1 (round 0 trains dense), got {round_}")
    pat = _patterns.get(pattern)
    pruned = [name for name, rate in rates.items() if rate > 0]
    if pat.fixed_density is not None:
        return compute_masks(
            model,
            None,
            pattern=pat,
            distribution="uniform",
            exclude=_only(model, pruned),
            **_AS_PAPER,
        )
    if scope == "global":
        (rate,) = set(rates[n] for n in pruned)
        masks = compute_masks(
            model,
            sparsity_after(rate, round_),
            pattern=pat,
            distribution="global",
            exclude=_only(model, pruned),
            **_AS_PAPER,
        )
    else:
        masks = {}
        for name in pruned:
            masks.update(
                compute_masks(
                    model,
                    sparsity_after(rates[name], round_),
                    pattern=pat,
                    distribution="uniform",
                    exclude=_only(model, [name]),
                    **_AS_PAPER,
                )
            )
    empty = [name for name, mask in masks.items() if not bool(mask.any())]
    if empty:
        raise ValueError(
            f"round {round_} would prune {', '.join(empty)} to zero weights ({scope} "
            f"pruning); stop at round {round_ - 1} or lower the rate"
        )
    return masks


def random_masks(
    masks: Mapping[str, torch.Tensor],
    pattern: str,
    generator: torch.Generator,
    in_dims: Mapping[str, int] | None = None,
) -> dict[str, torch.Tensor]:
    """Uniformly random masks valid for ``pattern`` that keep exactly as many units of every
    layer as ``masks`` do (the random-pruning control: same per-layer sparsity). ``in_dims``:
    the weights' reduction axes where not 1 (``masking.in_dim_of``)."""
    pat = _patterns.get(pattern)
    noise = Random()
    out = {}
    for name, mask in masks.items():
        along = pat.along(in_dims.get(name, 1) if in_dims else 1)
        scores = noise.score(mask.float(), None, generator)
        units = int(mask.sum()) // along.unit_size(mask.shape)
        out[name] = along.expand(topk_mask(along.unit_scores(scores), units), mask.shape)
    return out


def _only(model: nn.Module, names: list[str]) -> list[str]:
    """``exclude`` that leaves only the parameters ``names`` prunable."""
    wanted = set(names)
    return [full for full, _, _ in prunable_parameters(model) if full not in wanted]
