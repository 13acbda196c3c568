"""Checking the metadata entry of each state-dict key against the safetensors header.

Entry kinds (``encoding``): ``dense`` and the codecs hold parts; ``mask_of`` is a bool mask
equal to the kept positions of another (sparse) entry; ``alias`` is the same tensor as another
entry (tied weights). Everything a decoder relies on is checked here first.
"""

from __future__ import annotations

import math
from typing import Any

from sparsetorch.checkpoint import dtypes
from sparsetorch.checkpoint.errors import CheckpointError
from sparsetorch.checkpoint.header import Header, code_of
from sparsetorch.checkpoint.tensor_codec import DENSE, parts_spec

MASK_OF = "mask_of"
ALIAS = "alias"
SEP = "::"  # part names: "<key>::<part>"; a dense tensor is stored under "<key>"


def part_key(key: str, part: str) -> str:
    return f"{key}{SEP}{part}" if part else key


def _is_count(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def _check_common(entry: dict[str, Any]) -> None:
    if entry.get("dtype") not in dtypes.NAMES:
        raise CheckpointError(f"unknown dtype {entry.get('dtype')!r}")
    shape = entry.get("shape")
    if not isinstance(shape, list) or not all(_is_count(d) for d in shape):
        raise CheckpointError(f"corrupt shape {shape!r}")


def dense_bytes(entries: dict[str, Any]) -> int:
    """Bytes the checked ``entries`` take once loaded as dense tensors (aliases share memory)."""
    return sum(
        math.prod(e["shape"]) * dtypes.itemsize(e["dtype"])
        for e in entries.values()
        if e["encoding"] != ALIAS
    )


def check_entries(header: Header, entries: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Check every entry; return {key: {part: file tensor name}}. Every file tensor must be
    claimed by exactly one entry."""
    claimed: dict[str, dict[str, str]] = {}
    for key, entry in entries.items():
        try:
            claimed[key] = _check_entry(header, key, entry, entries)
        except CheckpointError as exc:
            raise CheckpointError(f"{header.path}: tensor {key!r}: {exc}") from None
    names = [n for parts in claimed.values() for n in parts.values()]
    extra = sorted(set(header.tensors) - set(names))
    if extra:
        raise CheckpointError(f"{header.path}: tensor {extra[0]!r} is in the file but not listed")
    return claimed


def _check_entry(header: Header, key: str, entry: Any, entries: dict[str, Any]) -> dict[str, str]:
    if not isinstance(entry, dict):
        raise CheckpointError("corrupt metadata entry")
    _check_common(entry)
    encoding = entry.get("encoding")
    if encoding in (MASK_OF, ALIAS):
        source = entries.get(entry.get("source"))
        unusable = (MASK_OF, ALIAS, DENSE) if encoding == MASK_OF else (ALIAS,)
        if not isinstance(source, dict) or source.get("encoding") in unusable:
            raise CheckpointError(f"{encoding} names a missing or unusable source")
        if source.get("shape") != entry["shape"]:
            raise CheckpointError(f"{encoding} source has another shape")
        if encoding == MASK_OF and (entry["dtype"] != "bool" or source.get("dtype") == "bool"):
            raise CheckpointError("mask_of must be a bool mask of a non-bool tensor")
        if encoding == ALIAS and source.get("dtype") != entry["dtype"]:
            raise CheckpointError("alias source has another dtype")
        return {}
    numel = math.prod(entry["shape"])
    nnz, crc, params = entry.get("nnz"), entry.get("crc32"), entry.get("params")
    if not _is_count(nnz) or nnz > numel:
        raise CheckpointError(f"nnz {nnz!r} is not in [0, {numel}]")
    if not _is_count(crc) or not isinstance(params, dict) or not isinstance(encoding, str):
        raise CheckpointError("corrupt metadata entry (encoding, params or crc32)")
    parts = {}
    for part, (dtype_name, shape) in parts_spec(entry).items():
        name = part_key(key, part)
        info = header.tensors.get(name)
        if info is None:
            raise CheckpointError(f"part {name!r} is missing from the file")
        if info.code != code_of(dtype_name) or info.shape != tuple(shape):
            raise CheckpointError(
                f"part {name!r} is {info.code}{list(info.shape)}, expected "
                f"{code_of(dtype_name)}{list(shape)}"
            )
        parts[part] = name
    return parts
