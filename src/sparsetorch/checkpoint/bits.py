"""Packing small unsigned integers (k bits each) into bytes, little-endian bit order."""

from __future__ import annotations

import numpy as np


def packed_nbytes(count: int, k: int) -> int:
    return (count * k + 7) // 8


def pack_uint(values: np.ndarray, k: int) -> np.ndarray:
    """Pack ``values`` (each < 2**k) into ``packed_nbytes(len(values), k)`` uint8."""
    if k == 8:
        return values.astype(np.uint8)
    shifts = np.arange(k, dtype=np.uint8)
    planes = (values.astype(np.uint8)[:, None] >> shifts) & 1  # (count, k)
    return np.packbits(planes.reshape(-1), bitorder="little")


def unpack_uint(packed: np.ndarray, count: int, k: int) -> np.ndarray:
    """Inverse of :func:`pack_uint`: ``count`` values as uint8 (k <= 8)."""
    if k == 8:
        return packed[:count].copy()
    planes = np.unpackbits(packed, count=count * k, bitorder="little").reshape(count, k)
    weights = (1 << np.arange(k, dtype=np.uint8)).astype(np.uint8)
    return (planes * weights).sum(axis=1, dtype=np.uint8)
