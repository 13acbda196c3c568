"""Distributed sparse training: DDP and FSDP2 (``torch.distributed.fsdp.fully_shard``) with
masks that stay identical on every rank; docs/distributed.md has the guide.

Names are resolved lazily. The primitives below the mask mechanism (the sharded exact top-k,
DTensor plumbing) live in :mod:`sparsetorch.sharding`; this package sits above ``masking`` and
is imported only by code that wraps, checks or checkpoints a distributed model.
"""

from __future__ import annotations

from sparsetorch._lazy import lazy_names

_LAZY: dict[str, str] = {
    # wrapping a masked model
    "ddp": "sparsetorch.distributed.parallel:ddp",
    "fsdp": "sparsetorch.distributed.parallel:fsdp",
    "shard_masks": "sparsetorch.distributed.parallel:shard_masks",
    # checks
    "verify_masks": "sparsetorch.distributed.verify:verify_masks",
    "check_same_config": "sparsetorch.distributed.verify:check_same_config",
    "MasksDiverged": "sparsetorch.distributed.verify:MasksDiverged",
    "ConfigMismatch": "sparsetorch.distributed.verify:ConfigMismatch",
    # sharded checkpoints (DCP)
    "save_checkpoint": "sparsetorch.distributed.dcp:save_checkpoint",
    "load_checkpoint": "sparsetorch.distributed.dcp:load_checkpoint",
    "ReshardWarning": "sparsetorch.distributed.dcp:ReshardWarning",
    # exact top-k over shards
    "ShardSelector": "sparsetorch.sharding.topk:ShardSelector",
    "sharded_topk": "sparsetorch.sharding.topk:sharded_topk",
}

__all__ = sorted(_LAZY)

__getattr__, __dir__ = lazy_names(globals(), _LAZY)
