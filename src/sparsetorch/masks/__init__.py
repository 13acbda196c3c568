"""Masks on modules: attach, read, apply, remove; enforced under every torch.optim optimizer.

``sparsetorch.masks`` is also callable: ``st.masks(model)`` returns ``{param name: bool mask}``.
"""

from __future__ import annotations

import sys
import types

from sparsetorch.masks.enforce import mask_gradients_, mask_of
from sparsetorch.masks.module_masks import (
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
from sparsetorch.masks.prunable import PRUNABLE_TYPES, prunable_parameters

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


class _CallableModule(types.ModuleType):
    def __call__(self, model):  # st.masks(model)
        return get_masks(model)


sys.modules[__name__].__class__ = _CallableModule
