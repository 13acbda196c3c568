"""Coordinate format: ``indices`` (2, nnz) = (row, col) pairs and ``values`` (nnz,).

Storage 3 * nnz numbers (two int32 indices and one value per entry).
Entries are kept sorted row-major without duplicates (torch's "coalesced"), so:

* row access ``row(i)``: O(log nnz) by binary search (O(nnz) for unsorted entries);
* column access ``col(j)``: O(nnz) scan;
* ``@``: O(nnz * k) by the gather/index_add reference path; COO is the exchange format, convert
  to CSR (``to_csr()``, O(nnz)) for torch's faster kernel.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from sparsetorch.formats import _reference, _torch
from sparsetorch.formats._base import (
    SparseFormat,
    SparseVector,
    check_dense_2d,
    check_float,
    check_index,
    check_shape,
    index_dtype,
    invariant,
    same_device,
)
from sparsetorch.formats._compressed import compress_rows
from sparsetorch.formats._scipy import to_numpy

if TYPE_CHECKING:  # scipy is imported when it is used
    import scipy.sparse


class COO(SparseFormat):
    name = "coo"

    def __init__(self, indices: torch.Tensor, values: torch.Tensor, shape: tuple[int, int]) -> None:
        self.shape = check_shape(shape)
        check_index(indices, "indices", ndim=2)
        check_float(values, "values")
        if indices.shape[0] != 2 or values.dim() != 1 or values.numel() != indices.shape[1]:
            raise ValueError(
                f"indices must be (2, nnz) and values (nnz,), got {tuple(indices.shape)} "
                f"and {tuple(values.shape)}"
            )
        same_device("COO", indices=indices, values=values)
        _check_coordinates(indices, self.shape)
        idx = index_dtype(max(self.shape, default=0))
        self.indices = indices.to(idx).contiguous()  # (2, nnz): rows, cols
        self._values = values.contiguous()  # (nnz,)

    def arrays(self) -> dict[str, torch.Tensor]:
        return {"values": self._values, "indices": self.indices}

    @classmethod
    def from_dense(cls, t: torch.Tensor) -> COO:
        check_dense_2d(t, "COO")
        indices = (t != 0).nonzero().T  # (2, nnz), row-major order
        return cls(indices, t[indices[0], indices[1]], t.shape)

    def to_dense(self) -> torch.Tensor:
        out = torch.zeros(self.shape, dtype=self.dtype, device=self.device)
        out[self.indices[0].long(), self.indices[1].long()] = self._values
        return out

    def row(self, i: int) -> SparseVector:
        i = self._check_position(i, 0)
        probe = torch.tensor([i, i + 1], dtype=self.indices.dtype, device=self.device)
        start, end = torch.searchsorted(self.indices[0], probe).tolist()
        return SparseVector(
            self.indices[1, start:end].long(), self._values[start:end], self.shape[1]
        )

    def col(self, j: int) -> SparseVector:
        j = self._check_position(j, 1)
        hit = self.indices[1] == j  # (nnz,) scan
        return SparseVector(self.indices[0, hit].long(), self._values[hit], self.shape[0])

    def _matmul(self, x: torch.Tensor) -> torch.Tensor:
        return _reference.spmm_coo(self.indices[0], self.indices[1], self._values, x, self.shape[0])

    # ---- conversions --------------------------------------------------------------------
    def to_csr(self):
        from sparsetorch.formats.csr import CSR

        idx = index_dtype(max(self.nnz, self.shape[1]))
        row_ptr = compress_rows(self.indices[0], self.shape[0], idx)
        return CSR(row_ptr, self.indices[1], self._values, self.shape)

    def to_coo(self) -> COO:
        return self

    def to_torch(self) -> torch.Tensor:
        """A coalesced ``torch.sparse_coo`` tensor (torch needs int64 indices: a copy)."""
        return torch.sparse_coo_tensor(
            self.indices.long(),
            self._values,
            self.shape,
            is_coalesced=True,
            check_invariants=False,  # validated on construction
        )

    @classmethod
    def from_torch(cls, t: torch.Tensor) -> COO:
        _torch.require_layout(t, torch.sparse_coo, "COO", "convert with t.to_sparse_coo()")
        t = t.coalesce()  # sorts and sums duplicates; no-op when already coalesced
        return cls(t.indices(), t.values(), tuple(t.shape))

    def to_scipy(self) -> scipy.sparse.coo_array:
        import scipy.sparse

        rows, cols = to_numpy(self.indices[0]), to_numpy(self.indices[1])
        return scipy.sparse.coo_array((to_numpy(self._values), (rows, cols)), shape=self.shape)

    @classmethod
    def from_scipy(cls, a: scipy.sparse.sparray | scipy.sparse.spmatrix) -> COO:
        """Any scipy sparse array/matrix; duplicates are summed and entries sorted (a copy)."""
        from sparsetorch.formats.csr import CSR

        return CSR.from_scipy(a).to_coo()


def _check_coordinates(indices: torch.Tensor, shape: tuple[int, int]) -> None:
    if indices.shape[1] == 0:
        return
    for axis, name in enumerate(("row", "col")):
        bad = (indices[axis] < 0) | (indices[axis] >= shape[axis])
        if bad.any():
            e = int(bad.nonzero()[0])
            raise invariant(
                "COO",
                f"0 <= {name} < {shape[axis]}",
                f"indices[{axis}, {e}] = {int(indices[axis, e])}",
            )
    linear = indices[0].long() * shape[1] + indices[1].long()
    unsorted = linear[1:] <= linear[:-1]
    if unsorted.any():
        e = int(unsorted.nonzero()[0]) + 1
        raise invariant(
            "COO",
            "entries sorted row-major without duplicates",
            f"entry {e} ({int(indices[0, e])}, {int(indices[1, e])}) does not follow "
            f"entry {e - 1} ({int(indices[0, e - 1])}, {int(indices[1, e - 1])})",
        )
