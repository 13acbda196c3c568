"""``save``: a model or state_dict -> one compressed safetensors file, written atomically."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from sparsetorch._files import atomic_write, locked, remove_stale_temps
from sparsetorch.checkpoint import dtypes
from sparsetorch.checkpoint.entries import ALIAS, MASK_OF, SEP, part_key
from sparsetorch.checkpoint.header import FORMAT_VERSION, metadata_json
from sparsetorch.checkpoint.tensor_codec import Encoded, encode_tensor
from sparsetorch.masking import mask_owner

RESERVED_KEY = "__metadata__"  # the safetensors header's metadata map


def _state_dict(obj: nn.Module | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    if not isinstance(obj, Mapping):
        raise TypeError(
            f"save() takes an nn.Module or a state_dict (str -> Tensor), got {type(obj).__name__}"
        )
    state = {}
    for key, value in obj.items():
        if not isinstance(key, str) or not key or SEP in key:
            raise ValueError(f"state_dict key {key!r} must be a non-empty str without {SEP!r}")
        if key == RESERVED_KEY:
            raise ValueError(
                f"state_dict key {key!r} is reserved by safetensors for the file's metadata: "
                "rename that entry"
            )
        if not isinstance(value, torch.Tensor) or value.layout != torch.strided:
            raise TypeError(
                f"state_dict[{key!r}] must be a dense (strided) torch.Tensor, "
                f"got {type(value).__name__}"
                + (f" with layout {value.layout}" if isinstance(value, torch.Tensor) else "")
            )
        if value.device.type == "meta":
            raise TypeError(f"state_dict[{key!r}] is on the meta device: it holds no data")
        if not dtypes.is_supported(value.dtype):
            raise TypeError(
                f"state_dict[{key!r}] has dtype {value.dtype}; supported: {', '.join(dtypes.NAMES)}"
            )
        state[key] = value.detach()
    return state


def _identity(t: torch.Tensor) -> tuple:
    return (
        t.device,
        t.untyped_storage().data_ptr(),
        t.storage_offset(),
        t.shape,
        t.stride(),
        t.dtype,
    )


def _mask_pairs(state: dict[str, torch.Tensor]) -> dict[str, str]:
    """{weight key: mask key} for every mask (``<key>_sparsity_mask``, or the old
    ``<key>_mask``: ``masking.mask_owner``) shaped like the non-bool tensor ``<key>``."""
    pairs: dict[str, str] = {}
    for key, value in state.items():
        owner = mask_owner(key, state)
        if owner is not None and owner in state:
            weight = state[owner]
            if weight.dtype != torch.bool and weight.shape == value.shape:
                pairs.setdefault(owner, key)
    return pairs


def encode_state(state: dict[str, torch.Tensor]) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(metadata entries in state order, {file tensor name: tensor})."""
    pairs = _mask_pairs(state)
    mask_keys = set(pairs.values())
    entries: dict[str, dict[str, Any]] = {}
    tensors: dict[str, torch.Tensor] = {}
    seen: dict[tuple, str] = {}
    jobs = []  # (key, tensor, mask or None)
    for key, value in state.items():
        source = seen.setdefault(_identity(value), key)
        if source != key:
            entries[key] = _reference(ALIAS, source, value)
        elif key not in mask_keys:
            mask_key = pairs.get(key)
            jobs.append((key, value, state[mask_key] if mask_key else None))
    encoded = _encode_all(jobs)
    standalone = []
    for key, mask_key in pairs.items():
        if mask_key in entries:  # an alias
            continue
        if key in encoded and encoded[key].uses_mask:
            entries[mask_key] = _reference(MASK_OF, key, state[mask_key])
        else:
            standalone.append((mask_key, state[mask_key], None))
    encoded.update(_encode_all(standalone))
    storages: set[tuple] = set()
    for key, enc in encoded.items():
        entries[key] = enc.entry
        for part, tensor in enc.parts.items():
            storage = (tensor.untyped_storage().data_ptr(), tensor.device)
            if storage in storages and tensor.numel():  # safetensors refuses shared memory
                tensor = tensor.clone()
            storages.add(storage)
            tensors[part_key(key, part)] = tensor
    return {key: entries[key] for key in state}, tensors


def _encode_all(jobs: list[tuple[str, torch.Tensor, torch.Tensor | None]]) -> dict[str, Encoded]:
    return {key: encode_tensor(tensor, mask) for key, tensor, mask in jobs}


def _reference(kind: str, source: str, value: torch.Tensor) -> dict[str, Any]:
    return {
        "encoding": kind,
        "source": source,
        "dtype": dtypes.name_of(value.dtype),
        "shape": list(value.shape),
    }


def save(obj: nn.Module | Mapping[str, torch.Tensor], path: str | os.PathLike) -> Path:
    """Save a model (its ``state_dict()``, masks included) or a state_dict to ``path``.

    Masked and pruned tensors are stored as their kept values plus the cheapest index encoding;
    other tensors as they are. The write goes to a temporary file in the same directory, is
    flushed to disk, then renamed over ``path``: a crash never leaves a half-written file.
    Another process saving to the same path at the same time waits for this one (an advisory
    lock on ``.<name>.lock``); temp files a killed save left behind are removed. A new file
    gets the permissions the umask gives, a replaced one keeps its own. Returns ``path``.
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"path {str(path)!r} is a directory; give a file name")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"directory {str(path.parent)!r} does not exist")
    state = _state_dict(obj)
    entries, tensors = encode_state(state)
    meta = {
        "format_version": FORMAT_VERSION,
        "sparsetorch": _version(),
        "torch": torch.__version__,
        "tensors": entries,
    }
    _atomic_save(tensors, metadata_json(meta), path)
    return path


def _version() -> str:
    from sparsetorch import __version__

    return __version__


def lock_path(path: Path) -> Path:
    """The lock file of a checkpoint: ``.<name>.lock`` next to it, there while it is written."""
    return path.with_name(f".{path.name}.lock")


def _atomic_save(tensors: dict[str, torch.Tensor], metadata: dict[str, str], path: Path) -> None:
    """One writer at a time per target (others wait); temp files of killed writers go."""
    with locked(lock_path(path), wait=True):
        remove_stale_temps(path.parent, path.name)
        atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))
