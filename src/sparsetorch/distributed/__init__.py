"""Distributed sparse training: DDP and FSDP2 (``torch.distributed.fsdp.fully_shard``) with
masks that stay identical on every rank; docs/distributed.md has the guide.

Names are resolved lazily: ``sparsetorch.distributed.sharding`` and ``.topk`` (used by the
mask mechanism and the algorithms) import only torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY: dict[str, str] = {}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'sparsetorch.distributed' has no attribute {name!r}")
    module_name, _, attr = target.partition(":")
    value = getattr(importlib.import_module(module_name), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
