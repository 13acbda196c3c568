"""Cheap cross-rank checks: masks identical on every rank, one config on every rank.

:func:`verify_masks` costs two small all-reduces whatever the model size (plus, for sharded
masks, one all-reduce per shard group): per mask, each rank reduces its view of the whole
mask to a checksum (kept count, sum of kept flat indices, sum of a 32-bit mix of them), and
one ``all_reduce(MAX)`` over ``[checksums, -checksums]`` tells whether the minimum and the
maximum over the ranks agree. The same all-reduce carries two local invariants: pruned
weights are exactly zero, and the mask is bound to its parameter (the optimizer hooks find
it). For an FSDP2-sharded mask a rank's view of the whole mask is its shard's checksum summed
over the shard group: the ranks holding the same shard in different replicas (HSDP) are then
compared; the ranks of one shard group hold different rows and cannot disagree about them.

:func:`check_same_config` all-reduces a 64-bit hash of the run's config and the model's
structure; on a mismatch every rank raises the same error, listing what differs from rank 0.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from sparsetorch.masking import SUFFIX, mask_of, named_masked
from sparsetorch.sharding.dtensor import _rows, is_dtensor, local, selector_for
from sparsetorch.sharding.topk import GroupComm

_MIX = 2654435761  # Knuth's multiplicative hash constant


class MasksDiverged(RuntimeError):
    """The ranks of a group hold different masks (or masks are not enforced)."""


class ConfigMismatch(ValueError):
    """A rank was started with a different config or model than rank 0."""


def _unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, "module", model)  # DistributedDataParallel


def _hash64(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 2


def _checksum(mask: torch.Tensor) -> torch.Tensor:
    """(3,) int64: kept count, sum of kept flat indices, sum of their 32-bit mix (this rank's
    shard counted at its global flat indices)."""
    part = local(mask)
    offset = 0
    if is_dtensor(mask) and mask.dim():
        offset = _rows(mask)[0] * (mask.numel() // max(mask.shape[0], 1))
    idx = part.reshape(-1).nonzero().squeeze(1) + offset
    mixed = (idx * _MIX) & 0xFFFF_FFFF
    return torch.stack([torch.tensor(idx.numel(), device=idx.device), idx.sum(), mixed.sum()])


def verify_masks(model: nn.Module, group: Any = None, *, where: str = "") -> int:
    """Check that every rank of ``group`` (default: all) holds the same masks, that pruned
    weights are exactly zero and that every mask is enforced. Collective: every rank calls
    it at the same point. Raises :class:`MasksDiverged` naming the layers; returns the
    number of masks checked. ``where`` (e.g. ``"step 300"``) goes into the message."""
    comm = GroupComm(group, what=f"verify_masks{' at ' + where if where else ''}")
    found = list(named_masked(_unwrap(model)))
    names = [full for full, _, _ in found]
    # 1. the same masked parameters everywhere (else the next all-reduce would not match)
    shape = torch.tensor([len(names), _hash64("\n".join(names))])
    agreed = comm.max(torch.cat([shape, -shape]))
    if not torch.equal(agreed[:2], -agreed[2:]):
        raise MasksDiverged(
            f"ranks mask different parameters{' at ' + where if where else ''}: this rank "
            f"(rank {comm.rank}) has {len(names)} masks"
        )
    if not names:
        return 0
    # 2. checksums of every rank's view of each whole mask, and the local invariants
    rows = torch.zeros(len(names), 5, dtype=torch.int64)
    sharded: dict[int, list[int]] = {}
    for i, (_, module, name) in enumerate(found):
        mask = module._buffers[name + SUFFIX]
        param = module._parameters[name]
        rows[i, :3] = _checksum(mask).cpu()
        if is_dtensor(param) == is_dtensor(mask):  # else: sharded weight, whole mask
            rows[i, 3] = int(((local(param.detach()) != 0) & ~local(mask)).sum())
        rows[i, 4] = int(mask_of(param) is None or is_dtensor(param) != is_dtensor(mask))
        if is_dtensor(mask):
            sharded.setdefault(id(selector_for(mask)), []).append(i)
    for indices in sharded.values():  # a shard's checksum -> the whole mask's
        selector = selector_for(found[indices[0]][1]._buffers[found[indices[0]][2] + SUFFIX])
        rows[indices, :3] = selector.sum(rows[indices, :3])
    reduced = comm.max(torch.cat([rows[:, :3], -rows[:, :3], rows[:, 3:]], dim=1))
    differ = [n for n, r in zip(names, reduced) if not torch.equal(r[:3], -r[3:6])]
    stray = [n for n, r in zip(names, reduced) if r[6] > 0]
    unbound = [n for n, r in zip(names, reduced) if r[7] > 0]
    at = f" at {where}" if where else ""
    if differ:
        kept = comm.gather(rows[:, 0]).tolist()  # (world, masks)
        detail = "; ".join(
            f"{n}: kept {[per_rank[i] for per_rank in kept]} by rank"
            for i, n in enumerate(names)
            if n in differ
        )
        raise MasksDiverged(f"masks differ across ranks{at} in {differ} ({detail})")
    if unbound:
        raise MasksDiverged(
            f"masks not enforced{at} for {unbound}: their parameters were replaced (after "
            "fully_shard, call sparsetorch.distributed.shard_masks(model))"
        )
    if stray:
        raise MasksDiverged(f"pruned weights are not zero{at} in {stray}")
    return len(names)


def model_signature(model: nn.Module) -> list[list[Any]]:
    """[name, global shape, dtype] of every parameter and buffer (masks included)."""
    model = _unwrap(model)
    tensors = [*model.named_parameters(), *model.named_buffers()]
    return [[n, list(t.shape), str(t.dtype)] for n, t in tensors]


def check_same_config(
    config: Mapping[str, Any], model: nn.Module | None = None, group: Any = None
) -> None:
    """Raise :class:`ConfigMismatch` on every rank when any rank's ``config`` (JSON-able)
    or ``model`` structure differs from rank 0's. Collective."""
    import torch.distributed as dist

    mine = {"config": dict(config)}
    if model is not None:
        mine["model"] = model_signature(model)
    text = json.dumps(mine, sort_keys=True, default=str)
    comm = GroupComm(group, what="check_same_config")
    h = torch.tensor([_hash64(text)])
    agreed = comm.max(torch.cat([h, -h]))
    if agreed[0] == -agreed[1]:
        return
    everyone: list[Any] = [None] * comm.world_size
    dist.all_gather_object(everyone, json.loads(text), group=group)
    lines = []
    for rank, theirs in enumerate(everyone[1:], start=1):
        keys = _differences(everyone[0], theirs)
        if keys:
            lines.append(f"rank {rank} differs from rank 0 in {keys[:5]}")
    raise ConfigMismatch(
        "ranks were started with different configs: " + "; ".join(lines) + " (every rank "
        "must run the same command: same flags, config file and model)"
    )


def _differences(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b)):
            out += _differences(a.get(key), b.get(key), f"{prefix}{key}.")
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b) and prefix == "model.":
        return [f"model.{x[0]}" for x, y in zip(a, b) if x != y]
    return [] if a == b else [prefix.rstrip(".")]


__all__ = [
    "ConfigMismatch",
    "MasksDiverged",
    "check_same_config",
    "model_signature",
    "verify_masks",
]
