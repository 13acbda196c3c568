"""Shared helpers for the checkpoint tests: masks of every pattern, bitwise equality, and
re-writing a file with one thing changed (to build precisely corrupt checkpoints)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from sparsetorch.checkpoint import dtypes
from sparsetorch.checkpoint.header import metadata_json

PATTERNS = ("unstructured", "2:4", "1:4", "block4x4", "block2x8", "channel")


def make_mask(shape: tuple[int, ...], pattern: str, density: float, gen: torch.Generator):
    """A bool mask of ``pattern`` on the (shape[0], -1) view (shapes must fit the pattern)."""
    rows = shape[0]
    cols = int(torch.tensor(shape[1:]).prod()) if len(shape) > 1 else 1
    if pattern == "unstructured":
        mask = torch.rand(shape, generator=gen) < density
    elif ":" in pattern:
        n, m = map(int, pattern.split(":"))
        order = torch.rand(rows * cols // m, m, generator=gen).argsort(dim=1)
        mask = (order < n).reshape(shape)
    elif pattern.startswith("block"):
        h, w = map(int, pattern.removeprefix("block").split("x"))
        grid = torch.rand(rows // h, cols // w, generator=gen) < density
        mask = grid.repeat_interleave(h, 0).repeat_interleave(w, 1).reshape(shape)
    elif pattern == "channel":
        keep = torch.rand(rows, 1, generator=gen) < density
        mask = keep.expand(rows, cols).reshape(shape).clone()
    else:
        raise ValueError(pattern)
    return mask


def masked_weight(mask: torch.Tensor, dtype: torch.dtype, gen: torch.Generator) -> torch.Tensor:
    """Random values where kept (some exactly 0 and -0.0), +0.0 where pruned."""
    w = torch.randn(mask.shape, generator=gen).to(dtype)
    special = torch.rand(mask.shape, generator=gen)
    w = torch.where(special < 0.05, torch.zeros((), dtype=dtype), w)
    w = torch.where(special > 0.95, torch.tensor(-0.0, dtype=dtype), w)
    return w.masked_fill(~mask, 0)


def bits(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().view(dtypes.bits_view(t.dtype)) if t.dtype != torch.bool else t


def assert_bitwise(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert list(a) == list(b)
    for key in a:
        assert a[key].dtype == b[key].dtype, key
        assert a[key].shape == b[key].shape, key
        assert torch.equal(bits(a[key]), bits(b[key])), key


def read_raw(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(every stored tensor, the sparsetorch metadata) of a file, as stored."""
    with safe_open(str(path), framework="pt") as f:
        tensors = {k: f.get_tensor(k).clone() for k in f.keys()}  # noqa: SIM118
        meta = json.loads(f.metadata()["sparsetorch"].partition(" ")[2])
    return tensors, meta


def write_raw(path: Path, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """Write tensors + metadata (with a valid metadata checksum)."""
    save_file(tensors, str(path), metadata=metadata_json(meta))
