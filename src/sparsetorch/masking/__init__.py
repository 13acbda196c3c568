"""Masks on modules: attach, read, apply, remove; enforced under every torch.optim optimizer.

``st.masks(model)`` is :func:`get_masks`: ``{parameter name: bool mask}``.
"""

from __future__ import annotations

from sparsetorch.masking.enforce import mask_gradients_, mask_of
from sparsetorch.masking.module_masks import (
    LEGACY_SUFFIX,
    SUFFIX,
    apply_masks,
    attach_mask,
    detach_mask,
    get_mask,
    get_masks,
    mask_owner,
    masks_from_state_dict,
    migrate_state_dict,
    named_masked,
    remove_masks,
)
from sparsetorch.masking.prunable import PRUNABLE_TYPES, prunable_parameters
from sparsetorch.masking.torch_prune import (
    check_not_torch_pruned,
    take_over_torch_pruning,
    torch_pruned,
)

__all__ = [
    "LEGACY_SUFFIX",
    "PRUNABLE_TYPES",
    "SUFFIX",
    "apply_masks",
    "attach_mask",
    "check_not_torch_pruned",
    "detach_mask",
    "get_mask",
    "get_masks",
    "mask_gradients_",
    "mask_of",
    "mask_owner",
    "masks_from_state_dict",
    "migrate_state_dict",
    "named_masked",
    "prunable_parameters",
    "remove_masks",
    "take_over_torch_pruning",
    "torch_pruned",
]
