"""Masks on modules: attach, read, apply, remove; enforced under every torch.optim optimizer.

``st.masks(model)`` is :func:`get_masks`: ``{parameter name: bool mask}``. Which parameters are
prunable is one registry (``prunable.py``, built-in kinds in ``kinds.py``).
"""

from __future__ import annotations

from sparsetorch.masking import kinds as _kinds  # noqa: F401  (registers the built-in kinds)
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
    masked_names,
    masks_from_state_dict,
    migrate_state_dict,
    named_masked,
    remove_masks,
)
from sparsetorch.masking.prunable import (
    PrunableKind,
    in_dim_of,
    kind_of,
    prunable_parameters,
    register_prunable,
    registered_kinds,
    uncovered_weights,
    unregister_prunable,
)
from sparsetorch.masking.restore import masks_from_zeros, reattach_masks
from sparsetorch.masking.torch_prune import (
    check_not_torch_pruned,
    take_over_torch_pruning,
    torch_pruned,
)

__all__ = [
    "LEGACY_SUFFIX",
    "SUFFIX",
    "PrunableKind",
    "apply_masks",
    "attach_mask",
    "check_not_torch_pruned",
    "detach_mask",
    "get_mask",
    "get_masks",
    "in_dim_of",
    "kind_of",
    "mask_gradients_",
    "mask_of",
    "mask_owner",
    "masked_names",
    "masks_from_state_dict",
    "masks_from_zeros",
    "migrate_state_dict",
    "named_masked",
    "prunable_parameters",
    "reattach_masks",
    "register_prunable",
    "registered_kinds",
    "remove_masks",
    "take_over_torch_pruning",
    "torch_pruned",
    "uncovered_weights",
    "unregister_prunable",
]
