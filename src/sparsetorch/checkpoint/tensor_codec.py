"""One state-dict entry <-> its stored parts and JSON metadata entry.

A tensor is stored dense (one part, under its own name, readable by any safetensors reader) or
sparse: its kept values (``values``, in row-major order, original dtype) plus the index parts of
the cheapest codec (``sparsetorch.checkpoint.codecs``). The kept positions are the given mask
when the tensor is exactly zero outside it (a masked weight), otherwise its nonzero bits. Bool
tensors store no values: the kept positions are the True entries.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from sparsetorch.checkpoint import codecs, dtypes
from sparsetorch.checkpoint.codecs import PartsSpec
from sparsetorch.checkpoint.errors import CheckpointError
from sparsetorch.checkpoint.support import Support

DENSE = "dense"
# A sparse entry adds a values part and index parts to the header (~100 bytes each): a tensor
# stays dense unless the sparse parts save at least this much.
PART_OVERHEAD = 192


@dataclass
class Encoded:
    entry: dict[str, Any]  # JSON metadata for this state-dict key
    parts: dict[str, torch.Tensor]  # part name ("" = the dense tensor itself) -> CPU tensor
    uses_mask: bool = False  # the kept positions are exactly the given mask


def _raw(t: torch.Tensor) -> np.ndarray:
    """The bytes of a contiguous CPU tensor as a flat uint8 array (no copy)."""
    if t.numel() == 0:
        return np.empty(0, dtype=np.uint8)
    return t.reshape(-1).view(torch.uint8).numpy()


def checksum(parts: dict[str, torch.Tensor]) -> int:
    """crc32 over every stored byte of the parts, in sorted part-name order."""
    crc = 0
    for name in sorted(parts):
        crc = zlib.crc32(_raw(parts[name]), crc)
    return crc


def encode_tensor(tensor: torch.Tensor, mask: torch.Tensor | None = None) -> Encoded:
    t = tensor.detach().to("cpu").contiguous()
    numel = t.numel()
    entry: dict[str, Any] = {"dtype": dtypes.name_of(t.dtype), "shape": list(t.shape)}
    bits = t.reshape(-1).view(dtypes.bits_view(t.dtype)).numpy()  # (numel,)
    if mask is not None:
        support = Support(numel, mask=mask.detach().to("cpu").reshape(-1).numpy())
    else:
        support = Support(numel, mask=bits if t.dtype == torch.bool else bits != 0)
    nnz = support.nnz
    entry["nnz"] = nnz
    has_values = t.dtype != torch.bool
    itemsize = t.dtype.itemsize
    plan, pattern = None, DENSE if nnz == numel else "empty" if nnz == 0 else "unstructured"
    if nnz < numel:
        budget = (numel - nnz * has_values) * itemsize - PART_OVERHEAD
        plan, found = codecs.choose(support, tuple(t.shape), budget)
        pattern = found if nnz else pattern
    entry["pattern"] = pattern
    if plan is None:
        return _dense(entry, t, mask)
    parts: dict[str, torch.Tensor] = {}
    if has_values:
        values = support.gather(bits)
        if mask is not None and np.count_nonzero(values) != np.count_nonzero(bits):
            return encode_tensor(t)  # nonzeros outside the mask: store the mask on its own
        parts["values"] = torch.from_numpy(values).view(t.dtype)
    index = codecs.get(plan.codec).encode(support, tuple(t.shape), plan.params)
    parts.update({name: torch.from_numpy(np.ascontiguousarray(a)) for name, a in index.items()})
    entry.update(encoding=plan.codec, params=plan.params, crc32=checksum(parts))
    return Encoded(entry, parts, uses_mask=mask is not None)


def _dense(entry: dict[str, Any], t: torch.Tensor, mask: torch.Tensor | None) -> Encoded:
    if mask is not None:  # a mask must be its support to be useful; here it is not
        return encode_tensor(t)
    parts = {"": t}
    entry.update(encoding=DENSE, params={}, crc32=checksum(parts))
    return Encoded(entry, parts)


def parts_spec(entry: dict[str, Any]) -> PartsSpec:
    """The parts (dtype name, shape) a valid file holds for this entry."""
    shape = tuple(entry["shape"])
    if entry["encoding"] == DENSE:
        return {"": (entry["dtype"], shape)}
    try:
        codec = codecs.get(entry["encoding"])
    except ValueError as exc:
        raise CheckpointError(str(exc)) from None
    parts = codec.parts_spec(shape, entry["nnz"], entry["params"])
    if entry["dtype"] != "bool":
        parts["values"] = (entry["dtype"], (entry["nnz"],))
    return parts


def decode_tensor(
    entry: dict[str, Any], parts: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, Support | None]:
    """The dense tensor of an entry (new memory) and, for sparse ones, its kept positions.
    ``parts`` must match :func:`parts_spec`; the checksum is verified here."""
    if checksum(parts) != entry["crc32"]:
        raise CheckpointError("checksum mismatch: the stored bytes are corrupt")
    if entry["encoding"] == DENSE:
        return parts[""].clone(), None
    dtype = dtypes.torch_dtype(entry["dtype"])
    shape = tuple(entry["shape"])
    index = {name: p.numpy() for name, p in parts.items() if name != "values"}
    codec = codecs.get(entry["encoding"])
    support = codec.decode(index, shape, entry["nnz"], entry["params"])
    if dtype == torch.bool:
        return torch.from_numpy(support.mask()).reshape(shape), support
    values = parts["values"].view(dtypes.bits_view(dtype)).numpy()
    dense = torch.from_numpy(support.scatter(values)).view(dtype).reshape(shape)
    return dense, support
