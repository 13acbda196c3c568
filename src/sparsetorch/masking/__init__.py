"""Masks on modules: attach, read, apply, remove; enforced under every torch.optim optimizer.

``st.masks(model)`` is :func:`get_masks`: ``{parameter name: bool mask}``.
"""

from __future__ import annotations

from sparsetorch.masking.enforce import mask_gradients_, mask_of
from sparsetorch.masking.module_masks import (
    SUFFIX,
    apply_masks,
    attach_mask,
    detach_mask,
    get_mask,
    get_masks,
    masks_from_state_dict,
    named_masked,
    remove_masks,
)
from sparsetorch.masking.prunable import PRUNABLE_TYPES, prunable_parameters

__all__ = [
    "PRUNABLE_TYPES",
    "SUFFIX",
    "apply_masks",
    "attach_mask",
    "detach_mask",
    "get_mask",
    "get_masks",
    "mask_gradients_",
    "mask_of",
    "masks_from_state_dict",
    "named_masked",
    "prunable_parameters",
    "remove_masks",
]
