"""One bit per element, packed little-endian: best between ~6% and ~97% density."""

from __future__ import annotations

import numpy as np

from sparsetorch.checkpoint.codecs.base import Codec, Layout, Plan, Shape2d
from sparsetorch.checkpoint.errors import CheckpointError
from sparsetorch.checkpoint.support import Support


class Bitmask(Codec):
    name = "bitmask"

    def plan(self, support: Support, shape: Shape2d, budget: int) -> Plan | None:
        return Plan(self.name, (support.numel + 7) // 8)

    def encode(self, support: Support, shape: Shape2d, params: dict) -> dict[str, np.ndarray]:
        return {"bitmask": np.packbits(support.mask(), bitorder="little")}

    def layout(self, shape: Shape2d, nnz: int, params: dict) -> Layout:
        return {"bitmask": ("uint8", ((shape[0] * shape[1] + 7) // 8,))}

    def decode(
        self, parts: dict[str, np.ndarray], shape: Shape2d, nnz: int, params: dict
    ) -> Support:
        numel = shape[0] * shape[1]
        mask = np.unpackbits(parts["bitmask"], count=numel, bitorder="little").view(np.bool_)
        support = Support(numel, mask=mask)
        if support.nnz != nnz:
            raise CheckpointError(f"bitmask has {support.nnz} set bits, expected {nnz}")
        return support
