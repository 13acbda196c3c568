"""N:M masks (exactly N kept in every M consecutive elements of a row): log2(M)-bit indices.

For 2:4 this is the compressed layout sparse tensor cores use: values (rows, cols/2) plus a
2-bit position per kept value. M is a power of two, 2 <= M <= 16; the smallest M that fits wins.
"""

from __future__ import annotations

import numpy as np

from sparsetorch.checkpoint.bits import pack_uint, packed_nbytes, unpack_uint
from sparsetorch.checkpoint.codecs.base import Codec, Layout, Plan, Shape2d
from sparsetorch.checkpoint.errors import CheckpointError
from sparsetorch.checkpoint.support import Support

GROUP_SIZES = (2, 4, 8, 16)
_SAMPLE_GROUPS = 4096  # checked first, so unstructured masks are rejected cheaply


def detect_nm(support: Support, shape: Shape2d) -> tuple[int, int] | None:
    """(n, m) with exactly n kept in every group of m, for the smallest fitting m."""
    cols = shape[1]
    numel, nnz = support.numel, support.nnz
    for m in GROUP_SIZES:
        if cols % m or (nnz * m) % numel:
            continue
        n = nnz * m // numel
        if not 0 < n < m:
            continue
        groups = support.mask().reshape(-1, m)  # (numel/m, m)
        head = groups[:_SAMPLE_GROUPS].sum(axis=1, dtype=np.uint8)
        if (head != n).any():
            continue
        if (groups.sum(axis=1, dtype=np.uint8) == n).all():
            return n, m
    return None


class NM(Codec):
    name = "nm"

    def plan(self, support: Support, shape: Shape2d, budget: int) -> Plan | None:
        found = detect_nm(support, shape)
        if found is None:
            return None
        n, m = found
        bits = m.bit_length() - 1
        return Plan(self.name, packed_nbytes(support.nnz, bits), {"n": n, "m": m}, f"{n}:{m}")

    def encode(self, support: Support, shape: Shape2d, params: dict) -> dict[str, np.ndarray]:
        m = params["m"]
        within = (support.positions() % m).astype(np.uint8)  # (nnz,) position in its group
        return {"nm_index": pack_uint(within, m.bit_length() - 1)}

    def _check(self, shape: Shape2d, nnz: int, params: dict) -> tuple[int, int]:
        n, m = params.get("n"), params.get("m")
        if m not in GROUP_SIZES or not isinstance(n, int) or not 0 < n < m:
            raise CheckpointError(
                f"nm parameters {params} are not a valid N:M with M in {GROUP_SIZES}"
            )
        numel = shape[0] * shape[1]
        if shape[1] % m or nnz * m != numel * n:
            raise CheckpointError(f"{n}:{m} does not fit shape {shape} with nnz={nnz}")
        return n, m

    def layout(self, shape: Shape2d, nnz: int, params: dict) -> Layout:
        _, m = self._check(shape, nnz, params)
        return {"nm_index": ("uint8", (packed_nbytes(nnz, m.bit_length() - 1),))}

    def decode(
        self, parts: dict[str, np.ndarray], shape: Shape2d, nnz: int, params: dict
    ) -> Support:
        n, m = self._check(shape, nnz, params)
        within = unpack_uint(parts["nm_index"], nnz, m.bit_length() - 1).reshape(-1, n)
        if n > 1 and (np.diff(within.astype(np.int16), axis=1) <= 0).any():
            raise CheckpointError(f"{n}:{m} indices are not strictly increasing within a group")
        starts = np.arange(0, shape[0] * shape[1], m, dtype=np.int64)  # (groups,)
        positions = (starts[:, None] + within).reshape(-1)
        return Support(shape[0] * shape[1], positions=positions)
