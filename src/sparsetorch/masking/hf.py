"""Masks and Hugging Face ``save_pretrained``: the mask buffers stay out of the HF checkpoint.

A pruned model's ``state_dict`` holds its masks (``<param>_mask``), so that ``torch.save``,
``st.save`` and training checkpoints keep them. A Hugging Face checkpoint is read by
``from_pretrained`` and by every other tool of that ecosystem, which know no mask: there the
zeros in the weights are the pruning, and extra keys would be reported as unexpected and
dropped. So on a transformers ``PreTrainedModel`` with masks, ``_keys_to_ignore_on_save`` (the
keys ``save_pretrained`` leaves out, matched exactly) is replaced by :class:`MaskKeys`: the
model's own keys plus the state_dict keys of the masks it holds *when it is saved*.
``sparsetorch.reattach_masks(model)`` rebuilds the masks from the zeros after loading.

transformers is never imported here: a model can only be a ``PreTrainedModel`` when
``transformers.modeling_utils`` is already loaded.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator, Set

from torch import nn

ATTR = "_keys_to_ignore_on_save"


def is_hf_model(module: nn.Module) -> bool:
    hf = sys.modules.get("transformers.modeling_utils")
    base = getattr(hf, "PreTrainedModel", None)
    return base is not None and isinstance(module, base)


class MaskKeys(Set):
    """A set of state_dict keys: ``base`` plus the mask buffers ``model`` holds now."""

    def __init__(self, model: nn.Module, base: Iterable[str] | None = None) -> None:
        self.model = model
        self.base = set(base or ())

    def _keys(self) -> set[str]:
        from sparsetorch.masking.module_masks import SUFFIX, named_masked

        return self.base | {full + SUFFIX for full, _, _ in named_masked(self.model)}

    def __contains__(self, key: object) -> bool:
        return key in self._keys()

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._keys()))

    def __len__(self) -> int:
        return len(self._keys())

    def add(self, key: str) -> None:
        self.base.add(key)

    def update(self, keys: Iterable[str]) -> None:
        self.base.update(keys)

    @classmethod
    def _from_iterable(cls, it: Iterable[str]) -> set[str]:
        return set(it)  # `|`, `&`, `-` give plain sets

    def __repr__(self) -> str:
        return f"MaskKeys({sorted(self._keys())})"


def leave_masks_out_of_hf_saves(model: nn.Module) -> None:
    """Make ``save_pretrained`` of every transformers model in ``model`` (itself included)
    leave its mask buffers out; nothing for other models. Idempotent."""
    for module in model.modules():
        if is_hf_model(module) and not isinstance(getattr(module, ATTR, None), MaskKeys):
            setattr(module, ATTR, MaskKeys(module, getattr(module, ATTR, None)))
