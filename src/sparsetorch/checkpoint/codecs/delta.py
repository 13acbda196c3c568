"""Gaps between kept positions (minus one) as uint16 or uint32: best below ~6% density."""

from __future__ import annotations

import numpy as np

from sparsetorch.checkpoint.codecs.base import Codec, PartsSpec, Plan, Shape, numel_of
from sparsetorch.checkpoint.errors import CheckpointError
from sparsetorch.checkpoint.support import Support


def gaps(positions: np.ndarray) -> np.ndarray:
    """(nnz,) int64: the first position, then each gap minus one (so adjacent = 0)."""
    out = np.empty_like(positions)
    if len(positions):
        out[0] = positions[0]
        np.subtract(positions[1:], positions[:-1] + 1, out=out[1:])
    return out


def positions_from_gaps(deltas: np.ndarray) -> np.ndarray:
    """Inverse of :func:`gaps`: strictly increasing int64 positions."""
    out = deltas.astype(np.int64)
    out += 1
    np.cumsum(out, out=out)
    out -= 1
    return out


class Delta(Codec):
    def __init__(self, bits: int) -> None:
        self.bits = bits
        self.name = f"delta{bits}"
        self.dtype = np.dtype(f"uint{bits}")

    def plan(self, support: Support, shape: Shape, budget: int) -> Plan | None:
        nbytes = support.nnz * self.dtype.itemsize
        if nbytes >= budget or support.numel > 2**32:
            return None
        if support.nnz and gaps(support.positions()).max() >= 2**self.bits:
            return None
        return Plan(self.name, nbytes)

    def encode(self, support: Support, shape: Shape, params: dict) -> dict[str, np.ndarray]:
        return {"delta": gaps(support.positions()).astype(self.dtype)}

    def parts_spec(self, shape: Shape, nnz: int, params: dict) -> PartsSpec:
        return {"delta": (self.dtype.name, (nnz,))}

    def decode(self, parts: dict[str, np.ndarray], shape: Shape, nnz: int, params: dict) -> Support:
        numel = numel_of(shape)
        positions = positions_from_gaps(parts["delta"])
        if nnz and positions[-1] >= numel:
            raise CheckpointError(
                f"{self.name} indices reach position {positions[-1]}, tensor has {numel} elements"
            )
        return Support(numel, positions=positions)
