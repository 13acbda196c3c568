"""Masks back from a model's zeros.

An export that keeps the weights and not the masks (a Hugging Face ``save_pretrained``, an
ONNX or plain state_dict export after ``remove_masks``) still holds the pruning: the pruned
weights are exact zeros. :func:`reattach_masks` turns them back into masks, so training can go
on sparse (every optimizer then keeps the zeros). A kept weight that is exactly zero becomes
pruned, which float weights after training practically never are.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from sparsetorch.masking.module_masks import apply_masks
from sparsetorch.masking.prunable import FilterFn, prunable_parameters


@torch.no_grad()
def masks_from_zeros(
    model: nn.Module, exclude: Iterable[str] | None = None, filter_fn: FilterFn | None = None
) -> dict[str, torch.Tensor]:
    """``{parameter name: weight != 0}`` for every prunable weight (narrowed by ``exclude`` /
    ``filter_fn``) that holds at least one exact zero; dense weights get no mask."""
    masks = {}
    for full, module, name in prunable_parameters(model, exclude, filter_fn):
        kept = module._parameters[name].detach() != 0
        if not bool(kept.all()):
            masks[full] = kept
    return masks


def reattach_masks(
    model: nn.Module, exclude: Iterable[str] | None = None, filter_fn: FilterFn | None = None
) -> nn.Module:
    """Attach :func:`masks_from_zeros` to ``model`` (e.g. after ``from_pretrained`` of a pruned
    Hugging Face model) and return it: sparse training goes on with the same zeros."""
    return apply_masks(model, masks_from_zeros(model, exclude, filter_fn))
