"""Keep masks enforced under any torch.optim optimizer.

Two global optimizer hooks (installed once, on import of ``sparsetorch.masking``):

* before ``step()``: gradients of masked parameters are multiplied by their masks, so no
  optimizer moves a pruned weight and no momentum/Adam moment builds up there;
* after ``step()``: masked parameters are multiplied by their masks again (exact zeros whatever
  the optimizer does), and when a mask changed since this optimizer last saw it, the
  optimizer's per-parameter state tensors (momentum, exp_avg, exp_avg_sq, ...) are zeroed at
  masked positions, so stale moments never leak into weights that are grown back later.

Between ``backward()`` and ``step()``, ``param.grad`` is the dense gradient of the effective
weight: algorithms that grow connections (RigL) read it there.

Sparse gradients (``nn.Embedding(sparse=True)``) are masked the same way: the gradient (and a
sparse state tensor such as SGD's momentum buffer) is replaced by one with the same indices and
its values zeroed at pruned positions, so SparseAdam's and Adagrad's moments stay zero there too.

A masked parameter may be updated by a *sparse stepper* instead of the optimizer's own dense
update (``sparsetorch.accelerate`` registers one: Adam/AdamW/SGD on the kept entries only).
Steppers in ``SPARSE_STEPPERS`` run first in the pre-step hook and return the parameters they
updated; those are hidden from the optimizer's update (``grad`` is None during it and restored
after) and are neither masked nor re-zeroed here: a stepper writes kept entries only. A
stepper may keep such a parameter's state in its own layout (not shaped like the parameter:
left alone here); :func:`zero_state_` reaches it through the zeroers in ``STATE_ZEROERS``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.optim.optimizer import (
    register_optimizer_step_post_hook,
    register_optimizer_step_pre_hook,
)

from sparsetorch.masking.module_masks import OWNER_ATTR, SUFFIX
from sparsetorch.sharding.dtensor import local

# stepper(optimizer) -> the parameters it updated for this step (see the module docstring)
SPARSE_STEPPERS: list[Callable[[torch.optim.Optimizer], list[torch.Tensor]]] = []
# zeroer(optimizer, param, where): zero param's state at the True positions of the bool
# ``where`` (shaped like param) in a layout the zeroer owns (see zero_state_)
STATE_ZEROERS: list[Callable[[torch.optim.Optimizer, torch.Tensor, torch.Tensor], None]] = []
_HIDDEN = "_sparsetorch_hidden"  # optimizer attribute: (param, grad) hidden during the step


def mask_of(param: torch.Tensor) -> tuple[torch.Tensor, int] | None:
    """The live mask of ``param`` and its version, or None when it is not masked."""
    owner = getattr(param, OWNER_ATTR, None)
    if owner is None:
        return None
    module, name = owner
    # torch.nn.utils.prune moves a parameter it prunes to `<name>_orig`: still ours to enforce
    if param is not module._parameters.get(name, module._parameters.get(name + "_orig")):
        return None
    if name not in getattr(module, "_sparsetorch_masked", ()):
        return None
    return module._buffers[name + SUFFIX], module._sparsetorch_version


def _masked_params(optimizer: torch.optim.Optimizer):
    for group in optimizer.param_groups:
        for param in group["params"]:
            found = mask_of(param)
            if found is not None:
                yield param, found[0], found[1]


def _zero_pruned_(tensor: torch.Tensor, mask: torch.Tensor) -> None:
    # x * 0/1 through a uint8 view of the bool mask: 2x faster on CPU than
    # masked_fill_(~mask, 0) (no inverted copy, vectorised kernel). Pruned entries become 0
    # (-0.0 for negative x: == 0 all the same) as long as they were finite. FSDP2 weights,
    # grads, moments and masks are DTensors sharded alike: this rank zeroes its own shard.
    local(tensor).mul_(local(mask).view(torch.uint8))


def _pruned_sparse(tensor: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """A sparse COO ``tensor`` with its values zeroed at pruned positions (same indices)."""
    tensor = tensor.coalesce()
    indices = tensor.indices()  # (sparse dims, nnz)
    kept = mask[tuple(indices)]  # (nnz, *dense dims): the mask at every stored value
    values = tensor.values() * kept.to(tensor.dtype)
    return torch.sparse_coo_tensor(  # the indices of a valid tensor: nothing to check
        indices, values, tensor.shape, is_coalesced=True, check_invariants=False
    )


def _mask_grad_(param: torch.Tensor, mask: torch.Tensor) -> None:
    grad = param.grad
    if grad is None:
        return
    if grad.is_sparse:
        param.grad = _pruned_sparse(grad, mask)
    else:
        _zero_pruned_(grad, mask)


@torch.no_grad()
def _before_step(optimizer: torch.optim.Optimizer, args: object, kwargs: object) -> None:
    stepped = [p for stepper in SPARSE_STEPPERS for p in stepper(optimizer)]
    done = {id(p) for p in stepped}
    for param, mask, _ in _masked_params(optimizer):
        if id(param) not in done:
            _mask_grad_(param, mask)
    if stepped:
        optimizer.__dict__[_HIDDEN] = [(p, p.grad) for p in stepped]
        for p in stepped:
            p.grad = None


@torch.no_grad()
def _after_step(optimizer: torch.optim.Optimizer, args: object, kwargs: object) -> None:
    done = set()
    for param, grad in optimizer.__dict__.pop(_HIDDEN, ()):
        param.grad = grad
        done.add(id(param))
    seen = optimizer.__dict__.setdefault("_sparsetorch_seen", {})
    for param, mask, version in _masked_params(optimizer):
        if id(param) not in done:
            _zero_pruned_(param, mask)
        key = (id(param), id(mask))
        if seen.get(key) != version:
            zero_state_(optimizer, param, ~mask)
            seen[key] = version


@torch.no_grad()
def zero_state_(optimizer: torch.optim.Optimizer, param: torch.Tensor, where: torch.Tensor) -> None:
    """Zero ``optimizer``'s state of ``param`` (momentum, moments, ...) where the bool ``where``
    is True: dense tensors shaped like ``param`` here, other layouts by ``STATE_ZEROERS``."""
    for zeroer in STATE_ZEROERS:
        zeroer(optimizer, param, where)
    state = optimizer.state.get(param, {})
    for name, value in state.items():
        if not isinstance(value, torch.Tensor) or value.shape != param.shape:
            continue
        if value.is_sparse:  # e.g. SGD's momentum buffer for a sparse gradient
            state[name] = _pruned_sparse(value, ~where)
        else:  # FSDP2: this rank's shard of the state and of ``where``
            local(value).masked_fill_(local(where), 0)


_HANDLES = (
    register_optimizer_step_pre_hook(_before_step),
    register_optimizer_step_post_hook(_after_step),
)


@torch.no_grad()
def mask_gradients_(model: torch.nn.Module) -> None:
    """Mask the gradients now (e.g. before ``clip_grad_norm_``, which otherwise counts the
    dense gradient at pruned positions)."""
    from sparsetorch.masking.module_masks import _masked_param, named_masked

    for _, module, name in named_masked(model):
        _mask_grad_(_masked_param(module, name), module._buffers[name + SUFFIX])
