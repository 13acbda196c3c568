"""Masks and scores of FSDP2-sharded weights: the plumbing between DTensors and the plain
per-process tensors the algorithms compute on.

After ``torch.distributed.fsdp.fully_shard`` a weight is a ``DTensor`` whose placement on
its mesh is ``Shard(0)`` (rows split over the ranks, ``torch.chunk`` sizes; HSDP adds
``Replicate`` mesh dims). Its mask is stored the same way (a bool DTensor with the weight's
mesh and placements): each rank keeps the rows of the mask that match its rows of the weight.

Why the algorithms do not compute on DTensors directly: a reduction followed by ``.item()``
on a sharded DTensor returns this rank's partial value (``int(mask.sum())`` differs per rank,
measured with torch 2.13 / gloo), so every count would be silently wrong. Instead each
algorithm takes the local shards (:func:`local`), counts and selects through a
:class:`~sparsetorch.sharding.topk.Selector` (:func:`selector_for`: explicit all-reduces
over the shard group) and wraps its result back (:func:`like`).

Only ``sys.modules`` is consulted to tell a DTensor (no DTensor can exist unless torch's
DTensor module was imported), so single-process code pays nothing for this module.
"""

from __future__ import annotations

import sys
from typing import Any

import torch

from sparsetorch.sharding.topk import LOCAL, GroupComm, Selector, ShardSelector

_SELECTORS: dict[int, Selector] = {}  # id(process group) -> its selector


def is_dtensor(t: object) -> bool:
    module = sys.modules.get("torch.distributed.tensor")
    return module is not None and isinstance(t, module.DTensor)


def shard_dim(t: Any) -> int | None:
    """The mesh dim over which the DTensor ``t`` is split into dim-0 shards (None when every
    placement is Replicate). Other layouts raise ValueError: the exact top-k relies on
    dim-0 shards of a row-major tensor, whose rank order is the flat index order."""
    from torch.distributed.tensor import Replicate, Shard

    found = None
    for mesh_dim, placement in enumerate(t.placements):
        if isinstance(placement, Replicate):
            continue
        if isinstance(placement, Shard) and placement.dim == 0 and found is None:
            found = mesh_dim
            continue
        raise ValueError(
            f"sparsetorch supports weights sharded on dim 0 over one mesh dim (FSDP2's "
            f"default), got placements {tuple(t.placements)}"
        )
    return found


def _rows(t: Any) -> tuple[int, int]:
    """[start, stop) of this rank's rows of the global tensor (``torch.chunk`` sizes)."""
    dim = shard_dim(t)
    n = t.shape[0] if t.dim() else 1
    if dim is None:
        return 0, n
    world = t.device_mesh.size(dim)
    coordinate = t.device_mesh.get_local_rank(dim)
    chunk = -(-n // world)
    start = min(coordinate * chunk, n)
    stop = min(start + chunk, n)
    if t.to_local().shape[:1] != torch.Size([stop - start])[: t.dim()]:
        raise ValueError(
            f"rank {coordinate} holds {tuple(t.to_local().shape)} of a {tuple(t.shape)} "
            f"tensor; sparsetorch expects torch.chunk row sizes ({stop - start} rows)"
        )
    return start, stop


def local(t: torch.Tensor, like: torch.Tensor | None = None) -> torch.Tensor:
    """This process's part of ``t``: the local shard of a DTensor; with ``like`` a DTensor,
    a plain tensor of its global shape is cut to the rows that ``like`` holds here (scores
    drawn whole on every rank, e.g. SET's random ones); anything else is returned as is."""
    if is_dtensor(t):
        shard_dim(t)
        return t.to_local()
    if like is not None and is_dtensor(like):
        if t.shape != like.shape:
            raise ValueError(f"tensor of shape {tuple(t.shape)} is not like {tuple(like.shape)}")
        start, stop = _rows(like)
        return t[start:stop] if t.dim() else t
    return t


def like(t: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """``t`` (this process's part) as a tensor laid out like ``ref``: a DTensor with ``ref``'s
    mesh, placements and global shape, or ``t`` itself when ``ref`` is plain."""
    if not is_dtensor(ref):
        return t
    from torch.distributed.tensor import DTensor

    expected = ref.to_local().shape
    if t.shape != expected:
        raise ValueError(f"local part has shape {tuple(t.shape)}, expected {tuple(expected)}")
    return DTensor.from_local(
        t, ref.device_mesh, ref.placements, run_check=False, shape=ref.shape, stride=ref.stride()
    )


def shard_like(t: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """``t`` (a mask of ``ref``'s global shape) stored like ``ref``: unchanged for a plain
    ``ref``; for a DTensor ``ref``, a plain ``t`` (the whole mask, the same on every rank)
    is cut to this rank's rows, and a DTensor ``t`` must already share ``ref``'s layout."""
    if not is_dtensor(ref):
        if is_dtensor(t):
            raise TypeError("a sharded (DTensor) mask cannot be attached to a plain parameter")
        return t
    if is_dtensor(t):
        if t.device_mesh != ref.device_mesh or tuple(t.placements) != tuple(ref.placements):
            raise ValueError(
                f"mask placements {tuple(t.placements)} differ from the parameter's "
                f"{tuple(ref.placements)}"
            )
        return t
    return like(local(t, like=ref).to(ref.to_local().device), ref)


def selector_for(*tensors: torch.Tensor, pattern: Any = None) -> Selector:
    """The selector that counts and selects over ``tensors`` as a whole: :data:`LOCAL` for
    plain tensors, a :class:`ShardSelector` over the shard group of DTensors (all of them on
    the same mesh and placements). Sharded weights take only patterns whose units lie within
    a row (unstructured, channel); ``pattern`` is checked when given."""
    sharded = [t for t in tensors if is_dtensor(t)]
    if not sharded:
        return LOCAL
    first = sharded[0]
    for t in sharded[1:]:
        if t.device_mesh != first.device_mesh or tuple(t.placements) != tuple(first.placements):
            raise ValueError(
                "sharded tensors with different meshes or placements cannot be ranked together"
            )
    if pattern is not None and getattr(pattern, "name", "") not in ("unstructured", "channel"):
        raise ValueError(
            f"pattern {pattern.name!r} is not supported on FSDP-sharded weights (its units "
            "can straddle two ranks' rows); use 'unstructured' or 'channel'"
        )
    dim = shard_dim(first)
    if dim is None:
        return LOCAL
    group = first.device_mesh.get_group(dim)
    selector = _SELECTORS.get(id(group))
    if selector is None:
        selector = _SELECTORS[id(group)] = ShardSelector(GroupComm(group))
    return selector


__all__ = ["is_dtensor", "like", "local", "selector_for", "shard_dim", "shard_like"]
