"""Restore a decoded state_dict into a model: check everything, then swap.

The checkpoint decides which parameters are masked: its ``<param>_sparsity_mask`` entries (or
``<param>_mask``, the name masks had before) are attached (or replace the model's masks),
masks the checkpoint lacks are removed. Keys and shapes are
checked before the model is touched, so a mismatch leaves the model exactly as it was.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from sparsetorch.checkpoint.errors import CheckpointError
from sparsetorch.masking import SUFFIX, apply_masks, get_masks, migrate_state_dict, named_masked
from sparsetorch.masking.module_masks import detach_mask

_SHOWN = 5


def _names(keys: set[str]) -> str:
    shown = sorted(keys)[:_SHOWN]
    more = f" (and {len(keys) - _SHOWN} more)" if len(keys) > _SHOWN else ""
    return ", ".join(repr(k) for k in shown) + more


def plan_load(
    model: nn.Module, state: dict[str, torch.Tensor], where: str
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(plain entries, masks to attach) or CheckpointError naming the mismatched tensors."""
    state = migrate_state_dict(state)  # masks saved as `<param>_mask` before
    current = model.state_dict()
    mask_buffers = {name + SUFFIX for name in get_masks(model)}
    plain_expected = {k: v for k, v in current.items() if k not in mask_buffers}
    params = dict(model.named_parameters(remove_duplicate=False))
    plain, masks = {}, {}
    for key, value in state.items():
        owner = key.removesuffix(SUFFIX)
        if key in plain_expected:
            plain[key] = value
        elif owner != key and owner in params and value.dtype == torch.bool:
            masks[owner] = value
    unexpected = set(state) - set(plain) - {k + SUFFIX for k in masks}
    if unexpected:
        raise CheckpointError(f"{where}: tensors not in the model: {_names(unexpected)}")
    missing = set(plain_expected) - set(plain)
    if missing:
        raise CheckpointError(
            f"{where}: model tensors missing from the checkpoint: {_names(missing)}"
        )
    for key, value in plain.items():
        expected = plain_expected[key]
        if value.shape != expected.shape:
            raise CheckpointError(
                f"{where}: tensor {key!r} has shape {list(value.shape)}, the model's has "
                f"{list(expected.shape)}"
            )
        if value.dtype.is_floating_point != expected.dtype.is_floating_point:
            raise CheckpointError(
                f"{where}: tensor {key!r} is {value.dtype}, the model's is {expected.dtype}"
            )
    for owner, mask in masks.items():
        if mask.shape != params[owner].shape:
            raise CheckpointError(
                f"{where}: mask {owner + SUFFIX!r} has shape {list(mask.shape)}, parameter has "
                f"{list(params[owner].shape)}"
            )
    return plain, masks


def load_into(model: nn.Module, state: dict[str, torch.Tensor], path: Path) -> nn.Module:
    plain, masks = plan_load(model, state, str(path))
    # From here on nothing can fail on the checkpoint's account: swap. Masks the model already
    # has are loaded as buffers (its load hook re-zeroes the weights); new ones are attached
    # after the weights are in, so each weight is masked once.
    attached = set()
    for full, module, name in list(named_masked(model)):
        if full in masks:
            attached.add(full)
        else:
            detach_mask(module, name)
    model.load_state_dict(
        {**plain, **{k + SUFFIX: m for k, m in masks.items() if k in attached}}, strict=True
    )
    apply_masks(model, {k: m for k, m in masks.items() if k not in attached})
    return model
