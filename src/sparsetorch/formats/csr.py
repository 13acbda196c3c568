"""Compressed Sparse Row: ``values`` and ``col_indices`` (nnz,), ``row_ptr`` (rows + 1,).

Storage O(nnz + rows): (value bytes + index bytes) * nnz + index bytes * (rows + 1), with int32
indices whenever they fit. Costs:

* row access ``row(i)``: O(1) to locate (two reads of ``row_ptr``), O(row nnz) to read;
* column access ``col(j)``: O(nnz), a scan of ``col_indices``;
* ``@`` a vector or matrix: O(nnz * k). float32/float64 on CPU call torch's sparse CSR kernel
  (MKL, int32 indices: faster than torch's default int64); half types, which it lacks, and other devices use the gather/index_add reference path
  (GPU speed is the business of ``kernels``/``deploy``).
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
    same_device,
)
from sparsetorch.formats._compressed import check_compressed, compress_rows, expand_rows
from sparsetorch.formats._scipy import check_scipy, to_numpy, to_tensor

if TYPE_CHECKING:  # scipy is imported when it is used
    import scipy.sparse


class CSR(SparseFormat):
    name = "csr"

    def __init__(
        self,
        row_ptr: torch.Tensor,
        col_indices: torch.Tensor,
        values: torch.Tensor,
        shape: tuple[int, int],
    ) -> None:
        self.shape = check_shape(shape)
        check_index(row_ptr, "row_ptr")
        check_index(col_indices, "col_indices")
        check_float(values, "values")
        if values.dim() != 1 or values.numel() != col_indices.numel():
            raise ValueError(
                f"values must be 1-D like col_indices ({col_indices.numel()},), "
                f"got {tuple(values.shape)}"
            )
        same_device("CSR", row_ptr=row_ptr, col_indices=col_indices, values=values)
        check_compressed("CSR", row_ptr, col_indices, *self.shape)
        idx = index_dtype(max(values.numel(), self.shape[1]))
        self.row_ptr = row_ptr.to(idx).contiguous()  # (rows + 1,)
        self.col_indices = col_indices.to(idx).contiguous()  # (nnz,)
        self._values = values.contiguous()  # (nnz,)
        self._torch: torch.Tensor | None = None  # cached torch view for @

    def arrays(self) -> dict[str, torch.Tensor]:
        return {"values": self._values, "col_indices": self.col_indices, "row_ptr": self.row_ptr}

    @classmethod
    def from_dense(cls, t: torch.Tensor) -> CSR:
        check_dense_2d(t, "CSR")
        rows, cols = (t != 0).nonzero(as_tuple=True)  # row-major order
        idx = index_dtype(max(rows.numel(), t.shape[1]))
        return cls(compress_rows(rows, t.shape[0], idx), cols.to(idx), t[rows, cols], t.shape)

    def to_dense(self) -> torch.Tensor:
        out = torch.zeros(self.shape, dtype=self.dtype, device=self.device)
        out[self.row_indices(), self.col_indices.long()] = self._values
        return out

    def row_indices(self) -> torch.Tensor:
        """The row of every stored value (nnz,) int64: O(nnz + rows)."""
        return expand_rows(self.row_ptr)

    def row(self, i: int) -> SparseVector:
        i = self._check_position(i, 0)
        start, end = int(self.row_ptr[i]), int(self.row_ptr[i + 1])
        return SparseVector(
            self.col_indices[start:end].long(), self._values[start:end], self.shape[1]
        )

    def col(self, j: int) -> SparseVector:
        j = self._check_position(j, 1)
        hit = self.col_indices == j  # (nnz,) scan
        return SparseVector(self.row_indices()[hit], self._values[hit], self.shape[0])

    def _matmul(self, x: torch.Tensor) -> torch.Tensor:
        if _torch.has_spmm(self._values):
            return self._kernel_operand() @ x
        return self.matmul_reference(x)

    def _matvec(self, v: torch.Tensor) -> torch.Tensor:
        if _torch.has_spmm(self._values):
            return self._kernel_operand() @ v  # torch's mv path: 2x faster than (cols, 1)
        return super()._matvec(v)

    def _kernel_operand(self) -> torch.Tensor:
        """The torch CSR view used by ``@``, built once (the arrays never change)."""
        if self._torch is None:
            self._torch = self.to_torch()
        return self._torch

    def matmul_reference(self, x: torch.Tensor) -> torch.Tensor:
        """The reference twin of ``@`` for (cols, k) operands: gather + index_add."""
        return _reference.spmm_coo(
            self.row_indices(), self.col_indices, self._values, x, self.shape[0]
        )

    # ---- conversions --------------------------------------------------------------------
    def to_csr(self) -> CSR:
        return self

    def to_coo(self):
        from sparsetorch.formats.coo import COO

        indices = torch.stack([self.row_indices().to(self.col_indices.dtype), self.col_indices])
        return COO(indices, self._values, self.shape)

    def to_bsr(self, blocksize: tuple[int, int]):
        from sparsetorch.formats.bsr import BSR

        return BSR.from_coordinates(
            self.row_indices(), self.col_indices.long(), self._values, self.shape, blocksize
        )

    def to_torch(self) -> torch.Tensor:
        """A ``torch.sparse_csr`` tensor sharing these arrays (int32 indices when they fit)."""
        return _torch.compressed(
            torch.sparse_csr, self.row_ptr, self.col_indices, self._values, self.shape
        )

    @classmethod
    def from_torch(cls, t: torch.Tensor) -> CSR:
        _torch.require_layout(t, torch.sparse_csr, "CSR", "convert with t.to_sparse_csr()")
        return cls(t.crow_indices(), t.col_indices(), t.values(), tuple(t.shape))

    def to_scipy(self) -> scipy.sparse.csr_array:
        import scipy.sparse

        return scipy.sparse.csr_array(
            (to_numpy(self._values), to_numpy(self.col_indices), to_numpy(self.row_ptr)),
            shape=self.shape,
        )

    @classmethod
    def from_scipy(cls, a: scipy.sparse.sparray | scipy.sparse.spmatrix) -> CSR:
        """Any scipy sparse array/matrix; duplicates are summed and indices sorted (a copy)."""
        check_scipy(a)
        a = a.tocsr(copy=True)
        a.sum_duplicates()
        return cls(
            torch.from_numpy(a.indptr), torch.from_numpy(a.indices), to_tensor(a.data), a.shape
        )
