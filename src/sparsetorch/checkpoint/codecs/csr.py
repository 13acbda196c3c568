"""Compressed sparse rows: row pointers plus the narrowest column index that fits.

With uint8 columns (rows of <= 256 elements, e.g. small conv kernels) this beats delta16.
"""

from __future__ import annotations

import numpy as np

from sparsetorch.checkpoint.codecs.base import Codec, PartsSpec, Plan, Shape, shape2d
from sparsetorch.checkpoint.errors import CheckpointError
from sparsetorch.checkpoint.support import Support


def col_dtype(cols: int) -> np.dtype:
    for dtype in (np.uint8, np.uint16, np.uint32):
        if cols <= np.iinfo(dtype).max + 1:
            return np.dtype(dtype)
    return np.dtype(np.int64)


def crow_dtype(nnz: int) -> np.dtype:
    return np.dtype(np.int32 if nnz < 2**31 else np.int64)


class CSRIndex(Codec):
    name = "csr"

    def plan(self, support: Support, shape: Shape, budget: int) -> Plan | None:
        rows, cols = shape2d(shape)
        nnz = support.nnz
        nbytes = (rows + 1) * crow_dtype(nnz).itemsize + nnz * col_dtype(cols).itemsize
        return Plan(self.name, nbytes)

    def encode(self, support: Support, shape: Shape, params: dict) -> dict[str, np.ndarray]:
        rows, cols = shape2d(shape)
        row, col = np.divmod(support.positions(), cols)
        crow = np.zeros(rows + 1, dtype=crow_dtype(support.nnz))
        np.cumsum(np.bincount(row, minlength=rows), out=crow[1:])
        return {"crow": crow, "col": col.astype(col_dtype(cols))}

    def parts_spec(self, shape: Shape, nnz: int, params: dict) -> PartsSpec:
        rows, cols = shape2d(shape)
        return {
            "crow": (crow_dtype(nnz).name, (rows + 1,)),
            "col": (col_dtype(cols).name, (nnz,)),
        }

    def decode(self, parts: dict[str, np.ndarray], shape: Shape, nnz: int, params: dict) -> Support:
        rows, cols = shape2d(shape)
        crow = parts["crow"].astype(np.int64)
        col = parts["col"].astype(np.int64)
        counts = np.diff(crow)
        if crow[0] != 0 or crow[-1] != nnz or (counts < 0).any():
            raise CheckpointError(
                f"csr row pointers are not a non-decreasing run from 0 to nnz={nnz}"
            )
        if nnz and col.max() >= cols:
            raise CheckpointError(f"csr column index {col.max()} exceeds the row length {cols}")
        positions = np.repeat(np.arange(rows, dtype=np.int64) * cols, counts) + col
        if nnz > 1 and (np.diff(positions) <= 0).any():
            raise CheckpointError("csr column indices are not strictly increasing within rows")
        return Support(rows * cols, positions=positions)
