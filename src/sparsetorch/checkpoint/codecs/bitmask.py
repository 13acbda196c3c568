"""One bit per element, packed little-endian: best between ~6% and ~97% density."""

from __future__ import annotations

import numpy as np

from sparsetorch.checkpoint.codecs.base import Codec, PartsSpec, Plan, Shape, numel_of
from sparsetorch.checkpoint.errors import CheckpointError
from sparsetorch.checkpoint.support import Support


class Bitmask(Codec):
    name = "bitmask"

    def plan(self, support: Support, shape: Shape, budget: int) -> Plan | None:
        return Plan(self.name, (support.numel + 7) // 8)

    def encode(self, support: Support, shape: Shape, params: dict) -> dict[str, np.ndarray]:
        return {"bitmask": np.packbits(support.mask(), bitorder="little")}

    def parts_spec(self, shape: Shape, nnz: int, params: dict) -> PartsSpec:
        return {"bitmask": ("uint8", ((numel_of(shape) + 7) // 8,))}

    def decode(self, parts: dict[str, np.ndarray], shape: Shape, nnz: int, params: dict) -> Support:
        numel = numel_of(shape)
        mask = np.unpackbits(parts["bitmask"], count=numel, bitorder="little").view(np.bool_)
        support = Support(numel, mask=mask)
        if support.nnz != nnz:
            raise CheckpointError(f"bitmask has {support.nnz} set bits, expected {nnz}")
        return support
