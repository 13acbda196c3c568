"""Masks on nn.Modules: one mechanism, used by every algorithm.

How it works (docs/architecture.md has the trade-offs and measurements):

* A mask is a bool buffer ``<param>_sparsity_mask`` registered on the module that owns the
  parameter (True = kept). Buffers travel with ``state_dict``/``load_state_dict``, ``deepcopy``,
  pickling, ``.to(device)`` and ``.half()`` (bool buffers keep their dtype). The name is not
  ``torch.nn.utils.prune``'s ``<param>_mask``, so the two never overwrite each other; state
  dicts, checkpoints and run dirs written with the old ``<param>_mask`` name still load
  (:func:`migrate_state_dict`, also applied by ``load_state_dict`` into a masked module).
* The parameter itself holds exact zeros where the mask is False. No reparametrisation: the
  weight *is* the effective weight, so ``param.grad`` after ``backward()`` is the dense gradient
  of the effective weight (what RigL grows on), and the state_dict keys are the plain model's.
* A Hugging Face model's ``save_pretrained`` leaves the masks out (``hf.py``): there the zeros
  are the pruning; ``restore.reattach_masks`` rebuilds the masks from them after loading.
* Enforcement is in ``enforce.py``: global optimizer hooks mask gradients before every
  ``torch.optim`` step and re-zero weights (and optimizer moments at masked positions) after it.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator

import torch
from torch import nn

from sparsetorch.masking.hf import leave_masks_out_of_hf_saves
from sparsetorch.sharding.dtensor import shard_like

SUFFIX = "_sparsity_mask"
# the buffer name before: torch.nn.utils.prune's too, so only a bool tensor shaped like a
# parameter of the same state dict counts as one of our masks under it
LEGACY_SUFFIX = "_mask"
# attribute set on a masked Parameter: (owning module, parameter name); see enforce.py
OWNER_ATTR = "_sparsetorch_owner"


def masked_names(module: nn.Module) -> list[str]:
    """The names of ``module``'s own masked parameters (not its children's)."""
    return list(getattr(module, "_sparsetorch_masked", ()))


def _bind(module: nn.Module, name: str) -> None:
    """Point the parameter at its owner so optimizer hooks can find its mask."""
    param = module._parameters.get(name)
    if param is not None and getattr(param, OWNER_ATTR, (None,))[0] is not module:
        setattr(param, OWNER_ATTR, (module, name))


class _MaskedNames(list):
    """``module._sparsetorch_masked``: the names of a module's masked parameters.

    ``Parameter.__deepcopy__`` drops a parameter's attributes, and with them the owner binding
    the optimizer hooks look for; this list re-binds the copies while ``deepcopy`` copies the
    module (the new module and its new parameters are already in ``memo`` by then)."""

    def __init__(self, module: nn.Module, names: Iterator[str] | list[str] = ()) -> None:
        super().__init__(names)
        self.module = module

    def __deepcopy__(self, memo: dict[int, object]) -> _MaskedNames:
        new_module = copy.deepcopy(self.module, memo)
        new = _MaskedNames(new_module, list(self))
        memo[id(self)] = new
        for name in self:
            param = self.module._parameters.get(name)
            if param is not None:
                setattr(copy.deepcopy(param, memo), OWNER_ATTR, (new_module, name))
        return new


def _bind_hook(module: nn.Module, args: object) -> None:
    # Forward pre-hook: re-binds parameters that were replaced (``module.weight = ...``).
    # Skipped under torch.compile, where binding already happened eagerly.
    if torch.compiler.is_compiling():
        return
    for name in masked_names(module):
        _bind(module, name)


def _rezero_after_load(module: nn.Module, incompatible_keys: object) -> None:
    # load_state_dict(assign=True) replaces parameters: bind the new ones too
    with torch.no_grad():
        for name in masked_names(module):
            param = _masked_param(module, name)
            if param is not None:
                param.masked_fill_(~module._buffers[name + SUFFIX], 0)
            _bind(module, name)


def _masked_param(module: nn.Module, name: str) -> nn.Parameter | None:
    """The parameter ``name`` masks: ``module.<name>``, or ``<name>_orig`` after
    ``torch.nn.utils.prune`` reparametrised it (the same Parameter object, moved)."""
    param = module._parameters.get(name)
    return param if param is not None else module._parameters.get(name + "_orig")


def _migrate_on_load(module: nn.Module, state_dict: dict, prefix: str, *args: object) -> None:
    # load_state_dict pre-hook: a state dict written with the old `<param>_mask` name loads
    # into this masked module (load_state_dict works on its own copy of the dict)
    for name in masked_names(module):
        old, new = prefix + name + LEGACY_SUFFIX, prefix + name + SUFFIX
        value = state_dict.get(old)
        if new not in state_dict and isinstance(value, torch.Tensor) and value.dtype == torch.bool:
            state_dict[new] = state_dict.pop(old)


def _check_mask(param: torch.Tensor, mask: torch.Tensor, where: str) -> None:
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"mask for {where} must be a torch.Tensor, got {type(mask).__name__}")
    if mask.dtype != torch.bool:
        raise TypeError(f"mask for {where} must have dtype torch.bool, got {mask.dtype}")
    if mask.shape != param.shape:
        raise ValueError(
            f"mask for {where} has shape {tuple(mask.shape)}, parameter has {tuple(param.shape)}"
        )


def attach_mask(module: nn.Module, name: str, mask: torch.Tensor) -> None:
    """Attach (or replace) the mask of ``module.<name>`` and zero the pruned entries in place."""
    param = module._parameters.get(name)
    if param is None:
        if name + "_orig" in module._parameters:
            raise ValueError(
                f"{type(module).__name__}.{name} is pruned by torch.nn.utils.prune ({name}_orig, "
                f"{name}_mask): call sparsetorch.masking.take_over_torch_pruning(model) first "
                "(st.prune and the sparse-training algorithms do it themselves)"
            )
        raise ValueError(f"{type(module).__name__} has no parameter {name!r}")
    _check_mask(param, mask, f"{type(module).__name__}.{name}")
    mask = shard_like(mask, param)  # FSDP2: a DTensor weight's mask is sharded like it
    mask = mask.to(device=param.device).clone()
    buffer_name = name + SUFFIX
    if name in masked_names(module):
        module._buffers[buffer_name].copy_(mask)
    else:
        module.register_buffer(buffer_name, mask)
        if not hasattr(module, "_sparsetorch_masked"):
            module._sparsetorch_masked = _MaskedNames(module)
            module.register_forward_pre_hook(_bind_hook)
            module.register_load_state_dict_pre_hook(_migrate_on_load)
            module.register_load_state_dict_post_hook(_rezero_after_load)
        module._sparsetorch_masked.append(name)
    module._sparsetorch_version = getattr(module, "_sparsetorch_version", 0) + 1
    with torch.no_grad():
        param.masked_fill_(~module._buffers[buffer_name], 0)
    _bind(module, name)


def detach_mask(module: nn.Module, name: str) -> None:
    """Remove the mask of ``module.<name>``; the weight keeps its zeros (pruning is permanent)."""
    if name not in masked_names(module):
        raise ValueError(f"{type(module).__name__}.{name} has no mask")
    del module._buffers[name + SUFFIX]
    module._sparsetorch_masked.remove(name)
    param = _masked_param(module, name)
    if param is not None and hasattr(param, OWNER_ATTR):
        delattr(param, OWNER_ATTR)
    if not module._sparsetorch_masked:
        # remove our hooks by identity (handles would not survive deepcopy)
        for hooks, fn in (
            (module._forward_pre_hooks, _bind_hook),
            (module._load_state_dict_pre_hooks, _migrate_on_load),
            (module._load_state_dict_post_hooks, _rezero_after_load),
        ):
            for key in [k for k, h in hooks.items() if getattr(h, "hook", h) is fn]:
                del hooks[key]
        del module._sparsetorch_masked


def get_mask(module: nn.Module, name: str) -> torch.Tensor | None:
    """The live mask of ``module.<name>``, or None when it has none."""
    if name not in masked_names(module):
        return None
    return module._buffers[name + SUFFIX]


def named_masked(model: nn.Module) -> Iterator[tuple[str, nn.Module, str]]:
    """Yield (full parameter name, owning module, parameter name) for every masked parameter."""
    for module_name, module in model.named_modules():
        for name in masked_names(module):
            yield (f"{module_name}.{name}" if module_name else name), module, name


def get_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """{full parameter name: bool mask} of every masked parameter (the live buffers)."""
    return {full: module._buffers[name + SUFFIX] for full, module, name in named_masked(model)}


def _resolve(model: nn.Module, full_name: str) -> tuple[nn.Module, str]:
    module_name, _, name = full_name.rpartition(".")
    try:
        module = model.get_submodule(module_name) if module_name else model
    except AttributeError as exc:
        raise ValueError(f"model has no module {module_name!r} (for mask {full_name!r})") from exc
    if name not in module._parameters:
        raise ValueError(f"model has no parameter {full_name!r}")
    return module, name


def apply_masks(
    model: nn.Module, masks: dict[str, torch.Tensor], *, consume: bool = False
) -> nn.Module:
    """Attach a saved set of masks ({full parameter name: bool tensor}); all checked first.
    ``consume=True`` empties ``masks`` while attaching (each given mask is released once its
    copy is attached: a model's masks are never held twice)."""
    resolved = []
    for full, mask in masks.items():
        module, name = _resolve(model, full)
        _check_mask(module._parameters[name], mask, full)
        resolved.append((full, module, name))
    for full, module, name in resolved:
        attach_mask(module, name, masks.pop(full) if consume else masks[full])
    leave_masks_out_of_hf_saves(model)  # a Hugging Face checkpoint holds the zeros, no masks
    return model


def remove_masks(model: nn.Module) -> nn.Module:
    """Make pruning permanent: drop every mask, keep the zeros. The state_dict is then the
    plain architecture's."""
    for _, module, name in list(named_masked(model)):
        detach_mask(module, name)
    return model


def mask_owner(key: str, state_dict: dict[str, torch.Tensor]) -> str | None:
    """The parameter whose mask ``state_dict[key]`` is, or None when it is no mask: a bool
    ``<param>_sparsity_mask``, or a bool ``<param>_mask`` (the name masks had before) shaped
    like a non-bool ``<param>`` of the same state dict (torch.nn.utils.prune's float
    ``weight_mask``, or a model's own bool buffer such as ``attn_mask``, are not masks)."""
    value = state_dict[key]
    if not isinstance(value, torch.Tensor) or value.dtype != torch.bool:
        return None
    if key.endswith(SUFFIX):
        return key[: -len(SUFFIX)]
    if key.endswith(LEGACY_SUFFIX):
        owner = state_dict.get(key[: -len(LEGACY_SUFFIX)])
        if (
            isinstance(owner, torch.Tensor)
            and owner.dtype != torch.bool
            and owner.shape == value.shape
        ):
            return key[: -len(LEGACY_SUFFIX)]
    return None


def masks_from_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The masks stored in a masked model's state_dict, keyed by parameter name (under
    either the current or the old buffer name, see :func:`mask_owner`)."""
    out = {}
    for key, value in state_dict.items():
        owner = mask_owner(key, state_dict)
        if owner is not None:
            out.setdefault(owner, value)
    return out


def migrate_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state_dict`` with masks stored under the old ``<param>_mask`` name renamed to
    ``<param>_sparsity_mask`` (a new dict, same order; everything else as it was)."""
    out = {}
    for key, value in state_dict.items():
        owner = mask_owner(key, state_dict)
        if owner is not None and not key.endswith(SUFFIX):
            new = owner + SUFFIX
            if new not in state_dict:
                key = new
        out[key] = value
    return out
