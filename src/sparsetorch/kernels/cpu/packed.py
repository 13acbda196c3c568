"""The index structure the CPU kernels read: a mask's kept positions as CSR and CSC.

``Packed.from_mask(mask)`` for a bool (out, in) mask (True = kept):

* CSR: ``rowptr`` (out + 1,) int64, ``cols`` (nnz,): the kept entries row by row, columns
  ascending (the order of ``mask.nonzero()``); a weight's kept values ``vals`` (nnz,) are in
  this order.
* CSC: ``colptr`` (in + 1,) int64, ``rows`` (nnz,), ``perm`` (nnz,) int32: the same entries
  column by column, ``perm[k]`` the CSR position of CSC entry k (``vals[perm]`` are the values
  of W^T in CSR order).

Indices are int16 (read as unsigned: dimensions up to 65,536) when the dimension they index
allows, else int32: the kernels are memory bound at small batches, and 2-byte column indices
make a 90%-sparse fp32 weight 6 bytes per kept entry instead of torch CSR's 12.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

UINT16_LIMIT = 1 << 16


def index_dtype(extent: int) -> torch.dtype:
    """int16 (read as uint16 by the kernels) for indices below 65,536, else int32."""
    return torch.int16 if extent <= UINT16_LIMIT else torch.int32


def unsigned(idx: torch.Tensor) -> torch.Tensor:
    """int64 values of stored indices (int16 storage holds uint16 values)."""
    out = idx.long()
    return out & 0xFFFF if idx.dtype == torch.int16 else out


def _pointers(sorted_keys: torch.Tensor, n: int) -> torch.Tensor:
    ptr = torch.zeros(n + 1, dtype=torch.long)
    ptr[1:] = torch.bincount(sorted_keys, minlength=n).cumsum(0)
    return ptr


@dataclass(frozen=True)
class Packed:
    shape: tuple[int, int]  # (out, in)
    rowptr: torch.Tensor  # (out + 1,) int64
    cols: torch.Tensor  # (nnz,) int16/int32, CSR order
    colptr: torch.Tensor | None  # (in + 1,) int64; None: CSR only (inference)
    rows: torch.Tensor | None  # (nnz,) int16/int32, CSC order
    perm: torch.Tensor | None  # (nnz,) int32: CSR position of each CSC entry

    @classmethod
    def from_mask(cls, mask: torch.Tensor, csc: bool = True) -> Packed:
        """The kept positions of ``mask`` (True = kept); ``csc=False`` leaves out the CSC
        (the input gradient's structure), for inference."""
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool or mask.dim() != 2:
            raise TypeError("mask must be a 2-D torch.bool tensor (out, in)")
        mask = mask.detach().to("cpu")
        out, k = mask.shape
        if mask.numel() >= 2**31:
            raise ValueError(f"mask has {mask.numel()} entries; at most 2**31 - 1 are supported")
        r, c = mask.nonzero(as_tuple=True)  # CSR order: rows, then columns ascending
        colptr = rows = perm = None
        if csc:
            order = torch.argsort(c, stable=True)  # CSC order, rows ascending within a column
            colptr = _pointers(c[order], k)
            rows, perm = r[order].to(index_dtype(out)), order.to(torch.int32)
        return cls(
            shape=(out, k),
            rowptr=_pointers(r, out),
            cols=c.to(index_dtype(k)),
            colptr=colptr,
            rows=rows,
            perm=perm,
        )

    @property
    def nnz(self) -> int:
        return self.cols.numel()

    @property
    def density(self) -> float:
        return self.nnz / max(1, self.shape[0] * self.shape[1])

    def row_index(self) -> torch.Tensor:
        """The row of every kept entry, CSR order (nnz,) int64."""
        counts = self.rowptr[1:] - self.rowptr[:-1]
        return torch.repeat_interleave(torch.arange(self.shape[0]), counts)

    def flat(self) -> torch.Tensor:
        """Positions in the flattened (out * in) weight, CSR order (nnz,) int64."""
        return self.row_index() * self.shape[1] + unsigned(self.cols)

    def coo_indices(self) -> torch.Tensor:
        """(2, nnz) int64 row/column indices, CSR order (coalesced COO)."""
        return torch.stack([self.row_index(), unsigned(self.cols)])

    def nbytes(self) -> int:
        """Bytes of the index arrays (CSR and CSC), without the values."""
        arrays = (self.rowptr, self.cols, self.colptr, self.rows, self.perm)
        return sum(t.numel() * t.element_size() for t in arrays if t is not None)
