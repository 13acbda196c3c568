"""Compressed-row index arrays, shared by CSR (entries) and BSR (blocks).

``row_ptr`` (rows + 1,) holds where each row starts in ``col_indices``/``values``; row ``i``
is ``[row_ptr[i], row_ptr[i+1])``, found in O(1): CSR's row access.
"""

from __future__ import annotations

import torch

from sparsetorch.formats._base import invariant


def check_compressed(
    fmt: str, row_ptr: torch.Tensor, col_indices: torch.Tensor, n_rows: int, n_cols: int
) -> None:
    """Raise ValueError naming the first broken invariant of a compressed-row structure."""
    nnz = col_indices.numel()
    if row_ptr.numel() != n_rows + 1:
        raise invariant(fmt, "len(row_ptr) == rows + 1", f"{row_ptr.numel()} != {n_rows + 1}")
    first, last = int(row_ptr[0]), int(row_ptr[-1])
    if first != 0:
        raise invariant(fmt, "row_ptr[0] == 0", f"row_ptr[0] = {first}")
    if last != nnz:
        raise invariant(fmt, "row_ptr[-1] == nnz", f"row_ptr[-1] = {last}, nnz = {nnz}")
    steps = row_ptr.diff()
    if (steps < 0).any():
        i = int((steps < 0).nonzero()[0])
        raise invariant(
            fmt,
            "row_ptr is non-decreasing",
            f"row_ptr[{i}] = {int(row_ptr[i])} > row_ptr[{i + 1}] = {int(row_ptr[i + 1])}",
        )
    if nnz == 0:
        return
    bad = (col_indices < 0) | (col_indices >= n_cols)
    if bad.any():
        e = int(bad.nonzero()[0])
        raise invariant(
            fmt, f"0 <= col_indices < {n_cols}", f"col_indices[{e}] = {int(col_indices[e])}"
        )
    # within a row, columns strictly increase (sorted, no duplicates)
    row_start = torch.zeros(nnz, dtype=torch.bool, device=col_indices.device)
    starts = row_ptr[:-1][row_ptr[:-1] < nnz].long()
    row_start[starts] = True
    unsorted = (col_indices[1:] <= col_indices[:-1]) & ~row_start[1:]
    if unsorted.any():
        e = int(unsorted.nonzero()[0]) + 1
        raise invariant(
            fmt,
            "col_indices strictly increase within each row (sorted, no duplicates)",
            f"col_indices[{e - 1}] = {int(col_indices[e - 1])}, "
            f"col_indices[{e}] = {int(col_indices[e])} in one row",
        )


def expand_rows(row_ptr: torch.Tensor, nnz: int | None = None) -> torch.Tensor:
    """The row of every entry, (nnz,) int64, from row_ptr (rows + 1,): O(nnz + rows). Given
    ``nnz``, no device-to-host read of the counts' sum (no sync in a backward or a capture)."""
    n_rows = row_ptr.numel() - 1
    counts = row_ptr.diff().long()
    rows = torch.arange(n_rows, device=row_ptr.device)
    return torch.repeat_interleave(rows, counts, output_size=nnz)


def compress_rows(rows: torch.Tensor, n_rows: int, dtype: torch.dtype) -> torch.Tensor:
    """row_ptr (n_rows + 1,) from sorted row indices (nnz,). No host synchronisation on a GPU
    (``torch.bincount`` reads the maximum on the host): usable in a backward and a capture."""
    counts = torch.zeros(n_rows, dtype=torch.int64, device=rows.device)
    counts.index_add_(0, rows.long(), torch.ones_like(rows, dtype=torch.int64))
    row_ptr = torch.zeros(n_rows + 1, dtype=torch.int64, device=rows.device)
    torch.cumsum(counts, 0, out=row_ptr[1:])
    return row_ptr.to(dtype)
