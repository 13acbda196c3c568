"""Sharded checkpoints with ``torch.distributed.checkpoint`` (DCP): weights, masks and
optimizer state, each rank writing its own shards; loadable on any world size.

Masks are buffers, so they are part of the model's state dict: an FSDP2 mask is saved
sharded like its weight, a DDP (replicated) mask once. A small ``sparsetorch.json`` next to
DCP's files records the world size, the masked parameters and the caller's ``extra``
(JSON-able: step, seeds...). Loading attaches placeholder masks for every masked parameter
the model lacks, so DCP has somewhere to put them, then loads everything in place.

Another world size: DCP reshards every tensor by its global offsets, so a checkpoint of 4
ranks loads on 2 (or into a plain model in one process) with the same weights, the same
masks and the same optimizer moments. ``load_checkpoint`` explains it with a
:class:`ReshardWarning`, or refuses with ``reshard=False``.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sparsetorch.distributed.parallel import shard_masks
from sparsetorch.masking import LEGACY_SUFFIX, SUFFIX, attach_mask, get_mask, named_masked

META_FILE = "sparsetorch.json"
FORMAT = 1


class ReshardWarning(UserWarning):
    """A checkpoint is being loaded on a different number of ranks than wrote it."""


def _unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, "module", model)  # DistributedDataParallel


def _rank_and_world() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _state(model: nn.Module, optimizer: torch.optim.Optimizer | None) -> dict[str, Any]:
    """The state to save or to load into. ``get_optimizer_state_dict`` of an optimizer
    without state runs a zero-lr ``step()`` to create it (Adam's step count becomes 1): it
    is only called for optimizers that have state (saving) or are about to get it (loading)."""
    from torch.distributed.checkpoint.state_dict import (
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    state: dict[str, Any] = {"model": get_model_state_dict(model)}
    if optimizer is not None:
        state["optimizer"] = get_optimizer_state_dict(model, optimizer)
    return state


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a DCP checkpoint of ``model`` (masks included) and ``optimizer`` to the
    directory ``path``; ``extra`` (JSON-able) is returned by :func:`load_checkpoint`.
    Collective: every rank calls it."""
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp

    path = Path(path)
    rank, world = _rank_and_world()
    if optimizer is not None and not optimizer.state:
        optimizer = None  # nothing to save yet (a fresh optimizer loads the same)
    dcp.save(_state(model, optimizer), checkpoint_id=str(path))
    if rank == 0:
        meta = {
            "format": FORMAT,
            "world_size": world,
            "optimizer": optimizer is not None,
            "masks": [full for full, _, _ in named_masked(_unwrap(model))],
            "mask_suffix": SUFFIX,
            "extra": extra or {},
        }
        (path / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    if world > 1:
        dist.barrier()
    return path


def read_meta(path: str | Path) -> dict[str, Any]:
    """The ``sparsetorch.json`` of a checkpoint directory."""
    file = Path(path) / META_FILE
    if not file.is_file():
        raise FileNotFoundError(
            f"{str(path)!r} is not a sparsetorch DCP checkpoint (no {META_FILE})"
        )
    meta = json.loads(file.read_text())
    if meta.get("format") != FORMAT:
        raise ValueError(f"checkpoint {str(path)!r} has format {meta.get('format')}, not {FORMAT}")
    return meta


def load_checkpoint(
    path: str | Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    reshard: bool = True,
) -> dict[str, Any]:
    """Load a :func:`save_checkpoint` directory into ``model`` (attaching its masks) and
    ``optimizer``, in place, on any world size; returns its ``extra``. Collective.

    With ``reshard=False`` a checkpoint written by another number of ranks is refused."""
    import torch.distributed.checkpoint as dcp

    meta = read_meta(path)
    _, world = _rank_and_world()
    if meta["world_size"] != world:
        message = (
            f"checkpoint {str(path)!r} was written by {meta['world_size']} rank(s) and is "
            f"loaded by {world}"
        )
        if not reshard:
            raise ValueError(
                f"{message}; pass reshard=True to reshard it (DCP redistributes every weight, "
                "mask and optimizer moment to this job's shards by global offset: the same "
                "masks, cut differently)"
            )
        warnings.warn(
            f"{message}: resharding (weights, masks and optimizer moments are redistributed "
            "by global offset; the masks are the same)",
            ReshardWarning,
            stacklevel=2,
        )
    base = _unwrap(model)
    for full in meta["masks"]:
        module_name, _, name = full.rpartition(".")
        module = base.get_submodule(module_name) if module_name else base
        if get_mask(module, name) is None:  # a placeholder for DCP to fill
            ones = torch.ones(module._parameters[name].shape, dtype=torch.bool)
            attach_mask(module, name, ones)
    if not meta["optimizer"]:
        optimizer = None  # saved before its first step: a fresh one is the same
    state = _state(model, optimizer)
    # checkpoints written before the masks' buffer name changed hold them as `<param>_mask`
    stored = meta.get("mask_suffix", LEGACY_SUFFIX)
    renamed = {k: k.removesuffix(SUFFIX) + stored for k in state["model"] if k.endswith(SUFFIX)}
    if stored != SUFFIX:
        state["model"] = {renamed.get(k, k): v for k, v in state["model"].items()}
    dcp.load(state, checkpoint_id=str(path))
    if stored != SUFFIX:
        back = {old: new for new, old in renamed.items()}
        state["model"] = {back.get(k, k): v for k, v in state["model"].items()}
    from torch.distributed.checkpoint.state_dict import (
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    set_model_state_dict(model, state["model"])
    if optimizer is not None:
        set_optimizer_state_dict(model, optimizer, state["optimizer"])
    shard_masks(base)  # re-zero the weights, re-bind, and tell optimizers the masks changed
    return meta["extra"]


__all__ = ["ReshardWarning", "load_checkpoint", "read_meta", "save_checkpoint"]
