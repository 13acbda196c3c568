"""Block Sparse Row: dense ``values`` blocks (nblocks, h, w) in a CSR structure over blocks.

``row_ptr`` (rows/h + 1,) and ``col_indices`` (nblocks,) index block rows and block columns.
Storage: nblocks * h * w values + (nblocks + rows/h + 1) indices; one index per block instead of
per value, so it wins when nonzeros come in blocks (block-pruned weights) and loses on scattered
ones (a block is stored if any of its h*w entries is nonzero). ``nnz`` counts stored values,
explicit zeros inside blocks included. Costs: ``row(i)`` O(1) to locate, O(blocks in the row * w)
to read; ``col(j)`` O(nblocks); ``@`` O(nblocks * h * w * k): torch's BSR kernel for square
float32/64 blocks on CPU with >= 16 operand columns, batched block products otherwise.
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

# torch's CPU BSR kernel (MKL; square blocks, float32/64) is fast from 16 operand columns on, but
# 10-40x slower than dense below that for some block sizes (4x4 and 8x8 at k=1 and 8, 2x2 at
# k=8): docs/benchmarks.md, "Formats (CPU)", BSR table
_TORCH_MIN_COLUMNS = 16


def check_blocksize(blocksize: object, shape: tuple[int, ...]) -> tuple[int, int]:
    if (
        not isinstance(blocksize, tuple | list)
        or len(blocksize) != 2
        or not all(isinstance(b, int) and b >= 1 for b in blocksize)
    ):
        raise ValueError(f"blocksize must be two positive ints (h, w), got {blocksize!r}")
    h, w = blocksize
    if shape[0] % h or shape[1] % w:
        padded = (-(-shape[0] // h) * h, -(-shape[1] // w) * w)
        raise ValueError(
            f"BSR blocksize {(h, w)} must divide the shape {tuple(shape)}; pad the matrix with "
            f"zeros to {padded} (torch.nn.functional.pad) or pick a blocksize that divides it"
        )
    return h, w


def stored_blocks(t: torch.Tensor, blocksize: tuple[int, int]) -> torch.Tensor:
    """Which (h, w) blocks of the 2-D ``t`` BSR stores: those holding a nonzero (True entry of
    a bool mask), as a bool grid (rows/h, cols/w); the blocksize must divide the shape."""
    h, w = check_blocksize(blocksize, tuple(t.shape))
    rows, cols = t.shape
    nonzero = t if t.dtype == torch.bool else t != 0
    return nonzero.reshape(rows // h, h, cols // w, w).any(dim=3).any(dim=1)


class BSR(SparseFormat):
    name = "bsr"

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
        if values.dim() != 3 or values.shape[0] != col_indices.numel():
            raise ValueError(
                f"values must be blocks (nblocks={col_indices.numel()}, h, w), "
                f"got {tuple(values.shape)}"
            )
        h, w = check_blocksize(tuple(values.shape[1:]), self.shape)
        same_device("BSR", row_ptr=row_ptr, col_indices=col_indices, values=values)
        check_compressed("BSR", row_ptr, col_indices, self.shape[0] // h, self.shape[1] // w)
        idx = index_dtype(max(values.shape[0], self.shape[1] // w))
        self.row_ptr = row_ptr.to(idx).contiguous()  # (rows/h + 1,)
        self.col_indices = col_indices.to(idx).contiguous()  # (nblocks,) block columns
        self._values = values.contiguous()  # (nblocks, h, w)

    def arrays(self) -> dict[str, torch.Tensor]:
        return {"values": self._values, "col_indices": self.col_indices, "row_ptr": self.row_ptr}

    @property
    def blocksize(self) -> tuple[int, int]:
        return tuple(self._values.shape[1:])

    @property
    def nblocks(self) -> int:
        return self._values.shape[0]

    @classmethod
    def from_dense(cls, t: torch.Tensor, blocksize: tuple[int, int]) -> BSR:
        check_dense_2d(t, "BSR")
        h, w = check_blocksize(blocksize, t.shape)
        rows, cols = t.shape
        grid = t.reshape(rows // h, h, cols // w, w).transpose(1, 2)  # (rows/h, cols/w, h, w)
        block_rows, block_cols = stored_blocks(t, (h, w)).nonzero(as_tuple=True)
        idx = index_dtype(max(block_rows.numel(), cols // w))
        row_ptr = compress_rows(block_rows, rows // h, idx)
        return cls(row_ptr, block_cols, grid[block_rows, block_cols], t.shape)

    @classmethod
    def from_coordinates(
        cls,
        rows: torch.Tensor,
        cols: torch.Tensor,
        values: torch.Tensor,
        shape: tuple[int, int],
        blocksize: tuple[int, int],
    ) -> BSR:
        """From entries at (rows, cols) (nnz,) in any order without duplicates: O(nnz log nnz)."""
        h, w = check_blocksize(blocksize, shape)
        block_cols_total = shape[1] // w
        key = (rows // h) * block_cols_total + cols // w  # (nnz,) block id, row-major
        blocks_id, which = torch.unique(key, sorted=True, return_inverse=True)
        blocks = values.new_zeros(blocks_id.numel(), h, w)
        blocks[which, rows % h, cols % w] = values
        idx = index_dtype(max(blocks_id.numel(), block_cols_total))
        row_ptr = compress_rows(blocks_id // block_cols_total, shape[0] // h, idx)
        return cls(row_ptr, blocks_id % block_cols_total, blocks, shape)

    def to_dense(self) -> torch.Tensor:
        (h, w), (rows, cols) = self.blocksize, self.shape
        grid = self._values.new_zeros(rows // h, cols // w, h, w)
        grid[self.block_row_indices(), self.col_indices.long()] = self._values
        return grid.transpose(1, 2).reshape(rows, cols)

    def block_row_indices(self) -> torch.Tensor:
        """The block row of every block (nblocks,) int64."""
        return expand_rows(self.row_ptr)

    def row(self, i: int) -> SparseVector:
        i = self._check_position(i, 0)
        h, w = self.blocksize
        start, end = int(self.row_ptr[i // h]), int(self.row_ptr[i // h + 1])
        offsets = torch.arange(w, device=self.device)
        cols = self.col_indices[start:end].long().unsqueeze(1) * w + offsets  # (blocks, w)
        return SparseVector(
            cols.reshape(-1), self._values[start:end, i % h].reshape(-1), self.shape[1]
        )

    def col(self, j: int) -> SparseVector:
        j = self._check_position(j, 1)
        h, w = self.blocksize
        hit = self.col_indices == j // w  # (nblocks,) scan
        offsets = torch.arange(h, device=self.device)
        rows = self.block_row_indices()[hit].unsqueeze(1) * h + offsets  # (blocks, h)
        return SparseVector(
            rows.reshape(-1), self._values[hit][:, :, j % w].reshape(-1), self.shape[0]
        )

    def _matmul(self, x: torch.Tensor) -> torch.Tensor:
        h, w = self.blocksize
        if h == w and x.shape[1] >= _TORCH_MIN_COLUMNS and _torch.has_spmm(self._values):
            return self.to_torch() @ x
        return self.matmul_reference(x)

    def matmul_reference(self, x: torch.Tensor) -> torch.Tensor:
        """Batched block products in plain torch ops, for (cols, k) operands."""
        return _reference.spmm_blocks(
            self.block_row_indices(), self.col_indices, self._values, x, self.shape[0]
        )

    # ---- conversions --------------------------------------------------------------------
    def to_csr(self):
        """Drops the zeros stored inside blocks."""
        from sparsetorch.formats.csr import CSR

        (h, w), (_, cols) = self.blocksize, self.shape
        keep = self._values != 0  # (nblocks, h, w)
        block, r, c = keep.nonzero(as_tuple=True)
        rows_out = self.block_row_indices()[block] * h + r
        cols_out = self.col_indices[block].long() * w + c
        order = torch.argsort(rows_out * cols + cols_out)
        rows_out, cols_out = rows_out[order], cols_out[order]
        idx = index_dtype(max(rows_out.numel(), cols))
        row_ptr = compress_rows(rows_out, self.shape[0], idx)
        return CSR(row_ptr, cols_out, self._values[block, r, c][order], self.shape)

    def to_bsr(self, blocksize: tuple[int, int]) -> BSR:
        if tuple(blocksize) == self.blocksize:
            return self
        return self.to_csr().to_bsr(blocksize)

    def to_torch(self) -> torch.Tensor:
        """A ``torch.sparse_bsr`` tensor sharing these arrays."""
        return _torch.compressed(
            torch.sparse_bsr, self.row_ptr, self.col_indices, self._values, self.shape
        )

    @classmethod
    def from_torch(cls, t: torch.Tensor) -> BSR:
        _torch.require_layout(t, torch.sparse_bsr, "BSR", "convert with t.to_sparse_bsr((h, w))")
        return cls(t.crow_indices(), t.col_indices(), t.values(), tuple(t.shape))

    def to_scipy(self) -> scipy.sparse.bsr_array:
        import scipy.sparse

        return scipy.sparse.bsr_array(
            (to_numpy(self._values), to_numpy(self.col_indices), to_numpy(self.row_ptr)),
            shape=self.shape,
            blocksize=self.blocksize,
        )

    @classmethod
    def from_scipy(
        cls,
        a: scipy.sparse.sparray | scipy.sparse.spmatrix,
        blocksize: tuple[int, int] | None = None,
    ) -> BSR:
        """A scipy BSR keeps its blocksize; any other scipy matrix needs ``blocksize``."""
        check_scipy(a)
        if blocksize is None:
            if a.format != "bsr":
                raise ValueError(f"blocksize is required to convert a scipy {a.format} matrix")
            blocksize = a.blocksize
        check_blocksize(tuple(blocksize), a.shape)
        a = a.tobsr(blocksize=tuple(blocksize), copy=True)
        a.sum_duplicates()
        return cls(
            torch.from_numpy(a.indptr), torch.from_numpy(a.indices), to_tensor(a.data), a.shape
        )
