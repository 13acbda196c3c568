"""``load``: a checkpoint file -> a dense state_dict, a masked model, or sparse formats."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from torch import nn

from sparsetorch._checks import check_not_meta
from sparsetorch.checkpoint.entries import ALIAS, MASK_OF, check_entries, dense_bytes
from sparsetorch.checkpoint.errors import CheckpointError
from sparsetorch.checkpoint.header import (
    MAX_EXPANSION,
    Header,
    check_expansion,
    check_max_expansion,
    read_header,
    sparsetorch_metadata,
)
from sparsetorch.checkpoint.support import Support
from sparsetorch.checkpoint.tensor_codec import decode_tensor


def read_state(
    path: str | os.PathLike, max_expansion: float | None = MAX_EXPANSION
) -> tuple[dict[str, torch.Tensor], dict[str, Support]]:
    """Every tensor of the file as new dense CPU memory, in saved order, plus the kept
    positions of sparse-encoded entries. Checks the whole file; raises CheckpointError.
    ``max_expansion``: see :func:`load`."""
    max_expansion = check_max_expansion(max_expansion)
    header = read_header(path)
    meta = sparsetorch_metadata(header)
    if meta is None:
        return _read_plain(header), {}  # dense data: every byte is in the file
    entries = meta["tensors"]
    claimed = check_entries(header, entries)
    check_expansion(header.path, dense_bytes(entries), max_expansion)
    stored = [k for k, e in entries.items() if e["encoding"] not in (MASK_OF, ALIAS)]
    with _open(header) as f:
        parts = {key: _get_parts(f, header, key, claimed[key]) for key in stored}

    def decode(key: str) -> tuple[torch.Tensor, Support | None]:
        try:
            return decode_tensor(entries[key], parts[key])
        except CheckpointError as exc:
            raise CheckpointError(f"{header.path}: tensor {key!r}: {exc}") from None
        except Exception as exc:  # numpy/torch on bytes that passed every check: a bug
            raise CheckpointError(f"{header.path}: tensor {key!r}: unreadable ({exc})") from exc

    decoded = {key: decode(key) for key in stored}
    state = {key: tensor for key, (tensor, _) in decoded.items()}
    supports = {key: support for key, (_, support) in decoded.items() if support is not None}
    for key, entry in entries.items():
        if entry["encoding"] == MASK_OF:
            mask = supports[entry["source"]].mask()
            state[key] = torch.from_numpy(mask).reshape(entry["shape"])
    for key, entry in entries.items():
        if entry["encoding"] == ALIAS:
            state[key] = state[entry["source"]]
    return {key: state[key] for key in entries}, supports


def _get_parts(f: Any, header: Header, key: str, names: dict[str, str]) -> dict[str, torch.Tensor]:
    try:
        return {part: f.get_tensor(name) for part, name in names.items()}
    except Exception as exc:  # safetensors on a file that passed the header checks
        raise CheckpointError(f"{header.path}: tensor {key!r}: unreadable ({exc})") from exc


class _open:
    """safe_open whose errors become CheckpointError."""

    def __init__(self, header: Header) -> None:
        self.header = header

    def __enter__(self) -> Any:
        try:
            self.handle = safe_open(str(self.header.path), framework="pt")
            return self.handle.__enter__()
        except Exception as exc:
            raise CheckpointError(
                f"{self.header.path}: not a valid safetensors file ({exc})"
            ) from exc

    def __exit__(self, *exc_info: object) -> None:
        self.handle.__exit__(*exc_info)


def _read_plain(header: Header) -> dict[str, torch.Tensor]:
    """A safetensors file written by anything else: its tensors, as they are."""
    with _open(header) as f:
        state = {}
        for key in f.keys():  # noqa: SIM118 (safe_open is not a dict)
            try:
                state[key] = f.get_tensor(key).clone()
            except Exception as exc:
                raise CheckpointError(f"{header.path}: tensor {key!r}: unreadable ({exc})") from exc
        return state


def load(
    path: str | os.PathLike,
    model: nn.Module | None = None,
    as_format: str | None = None,
    dtype: torch.dtype | None = None,
    max_expansion: float | None = MAX_EXPANSION,
) -> Any:
    """Load a checkpoint written by :func:`sparsetorch.checkpoint.save`.

    * ``load(path)`` -> the saved state_dict as dense tensors (masks included as bool tensors);
    * ``load(path, model)`` -> ``model`` with weights and masks restored bitwise (masks are
      attached or replaced; masks the checkpoint lacks are removed). Everything is decoded and
      checked first: on any error the model is left exactly as it was;
    * ``load(path, as_format="csr")`` -> the state_dict with every sparse-encoded 2-D floating
      tensor converted by ``sparsetorch.formats.FORMATS`` ("csr", "coo", "bsr4x4", "nm2:4",
      ...), the rest dense (masks stay bool tensors: a format drops kept values equal to 0);
    * ``dtype=`` casts floating tensors (not masks) after loading (not with ``model=``: the
      model's own dtypes apply there).

    Any plain safetensors file loads too (without masks or checks beyond the header).

    ``max_expansion`` bounds what the file may take in memory once loaded, before anything is
    allocated: at most this many times the file's size (at least 64 MiB). A 99.99%-sparse model
    loads under the default (10000); a file beyond it is refused as a decompression bomb (a
    few hundred bytes claiming gigabytes). Pass a larger ratio, or None, for a file you trust
    that is sparser than that.
    """
    if model is not None and not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    check_not_meta(model, "model")
    if dtype is not None and (not isinstance(dtype, torch.dtype) or not dtype.is_floating_point):
        raise TypeError(f"dtype must be a floating torch.dtype, got {dtype!r}")
    if model is not None and (dtype is not None or as_format is not None):
        raise ValueError(
            "dtype= and as_format= do not apply with model=: the model keeps its own dtypes "
            "and dense parameters"
        )
    if as_format is not None:
        from sparsetorch.formats import FORMATS

        convert = FORMATS.build(as_format)  # unknown names list the known ones
    state, supports = read_state(path, max_expansion)
    if model is not None:
        from sparsetorch.checkpoint.into_model import load_into

        return load_into(model, state, Path(path))
    if dtype is not None:
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    if as_format is not None:
        state = {
            k: convert(v) if k in supports and v.dim() == 2 and v.is_floating_point() else v
            for k, v in state.items()
        }
    return state
