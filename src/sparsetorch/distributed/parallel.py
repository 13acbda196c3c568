"""Wrap a masked model for data-parallel training, keeping masks where they belong.

* :func:`ddp`: ``DistributedDataParallel`` that leaves the mask buffers out of its buffer
  broadcast. Masks are kept identical by construction (identical weights and all-reduced
  gradients give identical top-k choices; SET draws from a shared seed) and checked by
  :func:`~sparsetorch.distributed.verify.verify_masks`; broadcasting them from rank 0 before
  every forward would cost one byte per weight per step and hide a divergence instead of
  reporting it.
* :func:`fsdp`: ``fully_shard`` on every module that owns a prunable weight (its own
  all-gather unit) and on the root, then :func:`shard_masks`.
* :func:`shard_masks`: after ``fully_shard`` (yours or ours) every mask is stored like its
  weight (a bool DTensor with the weight's mesh and placements) and bound to the new sharded
  parameter, so the optimizer hooks zero this rank's shard of each gradient and weight.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from torch import nn

from sparsetorch.masking import SUFFIX, attach_mask, named_masked, prunable_parameters
from sparsetorch.sharding.dtensor import is_dtensor, shard_like


def ddp(model: nn.Module, **kwargs: Any) -> nn.Module:
    """``DistributedDataParallel(model, **kwargs)`` with the mask buffers left out of its
    buffer broadcast (masks attached later are never broadcast either)."""
    from torch.nn.parallel import DistributedDataParallel

    masks = [full + SUFFIX for full, _, _ in named_masked(model)]
    DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(model, masks)
    return DistributedDataParallel(model, **kwargs)


def shard_masks(model: nn.Module) -> nn.Module:
    """Store every mask of a ``fully_shard``-ed model like its weight, and re-bind it to the
    sharded parameter (``fully_shard`` replaces parameters: without this the optimizer hooks
    would not find their masks). Idempotent; a no-op for plain parameters."""
    for _, module, name in named_masked(model):
        param = module._parameters[name]
        buffer = module._buffers[name + SUFFIX]
        if is_dtensor(param) and not is_dtensor(buffer):
            module._buffers[name + SUFFIX] = shard_like(buffer, param)
        attach_mask(module, name, module._buffers[name + SUFFIX])
    return model


def fsdp(
    model: nn.Module, mesh: Any = None, units: Iterable[nn.Module] | None = None, **kwargs: Any
) -> nn.Module:
    """``fully_shard`` each of ``units`` (default: every module owning a prunable weight;
    e.g. the transformer blocks), then the root (``mesh`` and ``kwargs`` go to every call),
    then :func:`shard_masks`. Returns the model (sharded in place). Units only decide what
    is gathered together: every weight is sharded on dim 0 alike, and so is its mask."""
    from torch.distributed.fsdp import fully_shard

    if units is None:
        units = []
        for _, module, _ in prunable_parameters(model):
            if module is not model and all(module is not m for m in units):
                units.append(module)
    for module in units:
        fully_shard(module, mesh=mesh, **kwargs)
    fully_shard(model, mesh=mesh, **kwargs)
    return shard_masks(model)


__all__ = ["ddp", "fsdp", "shard_masks"]
