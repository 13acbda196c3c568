"""Models pruned with ``torch.nn.utils.prune``: found, and taken over by sparsetorch's masks.

torch's utility reparametrises a pruned parameter ``<name>``: the trained values move to the
Parameter ``<name>_orig``, the mask is a float buffer ``<name>_mask``, and a forward pre-hook
(a ``BasePruningMethod``) sets ``module.<name> = <name>_orig * <name>_mask`` before every
forward. :func:`take_over_torch_pruning` makes that permanent the way
``torch.nn.utils.prune.remove`` does (the product becomes ``<name>``, the same Parameter
object, so an optimizer built before keeps it) and attaches a sparsetorch mask that keeps what
torch's mask kept (and what sparsetorch's own mask kept, when torch pruned an already masked
parameter). ``st.prune``, the at-initialisation methods by name and the sparse-training
algorithms (SET, RigL, GMP) take such models over by themselves.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from sparsetorch.masking.module_masks import attach_mask, get_mask


def torch_pruned(model: nn.Module) -> Iterator[tuple[str, nn.Module, str]]:
    """(full parameter name, owning module, parameter name) of every parameter that
    ``torch.nn.utils.prune`` reparametrised."""
    for module_name, module in model.named_modules():
        for hook in list(module._forward_pre_hooks.values()):
            if isinstance(hook, torch_prune.BasePruningMethod):
                name = hook._tensor_name
                yield (f"{module_name}.{name}" if module_name else name), module, name


def check_not_torch_pruned(model: nn.Module) -> None:
    """One ValueError naming the parameters ``torch.nn.utils.prune`` reparametrised (their
    weights are ``<name>_orig`` and would be skipped or pruned a second time unseen)."""
    found = [full for full, _, _ in torch_pruned(model)]
    if found:
        raise ValueError(
            f"parameter(s) {found} are pruned by torch.nn.utils.prune (<name>_orig and a float "
            "<name>_mask): call sparsetorch.masking.take_over_torch_pruning(model) first to "
            "turn them into sparsetorch masks (st.prune does it itself)"
        )


@torch.no_grad()
def take_over_torch_pruning(model: nn.Module) -> list[str]:
    """Turn every ``torch.nn.utils.prune`` reparametrisation of ``model`` into a sparsetorch
    mask, in place: ``<name> = <name>_orig * <name>_mask`` (``torch.nn.utils.prune.remove``)
    and a bool mask keeping the entries torch's mask kept (and sparsetorch's own mask, if the
    parameter had one). Returns the full names of the parameters taken over."""
    taken = []
    for full, module, name in list(torch_pruned(model)):
        kept = module._buffers[name + "_mask"] != 0  # (shape of the parameter)
        ours = get_mask(module, name)
        if ours is not None:
            kept = kept & ours
        torch_prune.remove(module, name)  # the product, into the same Parameter object
        attach_mask(module, name, kept.to(torch.bool))
        taken.append(full)
    return taken
