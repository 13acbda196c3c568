"""N:M masks (exactly N kept in every group of M): log2(M)-bit indices per kept value.

For 2:4 this is what sparse tensor cores store: half the values plus a 2-bit position each. M
is a power of two, 2 <= M <= 16; the smallest M that fits wins. Groups are M consecutive
elements of a row in one of two views (``params["view"]``):

* ``"in_last"`` (tensors of 3+ dims, tried first): the rows N:M pruning groups along
  (``sparsetorch.formats.nm.as_rows``), the weight as ``(out*kh*kw, in)`` with the input
  channels last (groups of input channels at each kernel position, as NVIDIA ASP);
* ``"rows"``: the tensor viewed as ``(shape[0], -1)`` (for Linear weights both views agree);
* ``"cols"`` (2-D tensors, tried after ``"rows"``): the transposed matrix, groups of M down a
  column: the N:M of a weight whose reduction axis is dim 0, transformers' ``Conv1D``
  ``(in, out)`` (the prunable-kind registry's ``in_dim``).

Which groups hold exactly N is ``sparsetorch.formats.nm.is_exactly_nm``, the formats' count.
"""

from __future__ import annotations

import numpy as np
import torch

from sparsetorch.checkpoint.bits import pack_uint, packed_nbytes, unpack_uint
from sparsetorch.checkpoint.codecs.base import Codec, PartsSpec, Plan, Shape, numel_of, shape2d
from sparsetorch.checkpoint.errors import CheckpointError
from sparsetorch.checkpoint.support import Support
from sparsetorch.formats.nm import as_rows, from_rows, is_exactly_nm

GROUP_SIZES = (2, 4, 8, 16)
VIEWS = ("in_last", "rows", "cols")
_SAMPLE_GROUPS = 4096  # checked first, so unstructured masks are rejected cheaply


def _views(shape: Shape) -> tuple[str, ...]:
    if len(shape) >= 3:
        return ("in_last", "rows")
    return ("rows", "cols") if len(shape) == 2 else ("rows",)


def row_length(shape: Shape, view: str) -> int:
    if view == "cols":
        return shape[0]
    return shape[1] if view == "in_last" else shape2d(shape)[1]


def view_rows(mask: np.ndarray, shape: Shape, view: str) -> torch.Tensor:
    """The flat row-major mask as the (rows, cols) matrix of the view (shares memory where
    no dim moves)."""
    t = torch.from_numpy(mask)
    if view == "rows":
        return t.reshape(shape2d(shape))
    if view == "cols":
        return t.reshape(shape).T  # (out, in): a view, its rows are the weight's columns
    return as_rows(t.reshape(shape))  # (out*k..., in), a copy


def to_view(mask: np.ndarray, shape: Shape, view: str) -> np.ndarray:
    """The flat row-major mask reordered into the view's row-major order."""
    if view == "rows":
        return mask
    return view_rows(mask, shape, view).contiguous().reshape(-1).numpy()


def from_view(mask: np.ndarray, shape: Shape, view: str) -> np.ndarray:
    if view == "rows":
        return mask
    if view == "cols":  # a copy back to row-major
        return torch.from_numpy(mask).reshape(shape[1], shape[0]).T.contiguous().reshape(-1).numpy()
    rows = torch.from_numpy(mask).reshape(-1, shape[1])  # (out*k..., in)
    return from_rows(rows, shape).reshape(-1).numpy()  # a copy back to row-major


def detect_nm(support: Support, shape: Shape) -> tuple[int, int, str] | None:
    """(n, m, view) with exactly n kept in every group of m, for the smallest fitting m."""
    numel, nnz = support.numel, support.nnz
    for view in _views(shape):
        cols = row_length(shape, view)
        rows = None
        for m in GROUP_SIZES:
            if cols % m or (nnz * m) % numel:
                continue
            n = nnz * m // numel
            if not 0 < n < m:
                continue
            if rows is None:
                rows = view_rows(support.mask(), shape, view)  # (R, cols)
            head = rows[: -(-_SAMPLE_GROUPS * m // cols)]
            if is_exactly_nm(head, n, m) and is_exactly_nm(rows, n, m):
                return n, m, view
    return None


class NM(Codec):
    name = "nm"

    def plan(self, support: Support, shape: Shape, budget: int) -> Plan | None:
        found = detect_nm(support, shape)
        if found is None:
            return None
        n, m, view = found
        nbytes = packed_nbytes(support.nnz, m.bit_length() - 1)
        return Plan(self.name, nbytes, {"n": n, "m": m, "view": view}, f"{n}:{m}")

    def encode(self, support: Support, shape: Shape, params: dict) -> dict[str, np.ndarray]:
        m, view = params["m"], params["view"]
        if view == "rows":
            positions = support.positions()
        else:
            positions = np.flatnonzero(to_view(support.mask(), shape, view))
        within = (positions % m).astype(np.uint8)  # (nnz,) position inside its group
        return {"nm_index": pack_uint(within, m.bit_length() - 1)}

    def _check(self, shape: Shape, nnz: int, params: dict) -> tuple[int, int, str]:
        n, m, view = params.get("n"), params.get("m"), params.get("view")
        if m not in GROUP_SIZES or not isinstance(n, int) or not 0 < n < m:
            raise CheckpointError(
                f"nm parameters {params} are not a valid N:M with M in {GROUP_SIZES}"
            )
        if view not in _views(shape):
            raise CheckpointError(f"nm view {view!r} does not apply to shape {list(shape)}")
        if row_length(shape, view) % m or nnz * m != numel_of(shape) * n:
            raise CheckpointError(f"{n}:{m} does not fit shape {list(shape)} with nnz={nnz}")
        return n, m, view

    def parts_spec(self, shape: Shape, nnz: int, params: dict) -> PartsSpec:
        _, m, _ = self._check(shape, nnz, params)
        return {"nm_index": ("uint8", (packed_nbytes(nnz, m.bit_length() - 1),))}

    def decode(self, parts: dict[str, np.ndarray], shape: Shape, nnz: int, params: dict) -> Support:
        n, m, view = self._check(shape, nnz, params)
        numel = numel_of(shape)
        within = unpack_uint(parts["nm_index"], nnz, m.bit_length() - 1).reshape(-1, n)
        if n > 1 and (np.diff(within.astype(np.int16), axis=1) <= 0).any():
            raise CheckpointError(f"{n}:{m} indices are not strictly increasing within a group")
        starts = np.arange(0, numel, m, dtype=np.int64)  # (groups,)
        positions = (starts[:, None] + within).reshape(-1)  # in the view's order
        if view == "rows":
            return Support(numel, positions=positions)
        viewed = np.zeros(numel, dtype=np.bool_)
        viewed[positions] = True
        return Support(numel, mask=from_view(viewed, shape, view))
