"""Compressed N:M: at most ``n`` nonzeros in every group of ``m`` consecutive elements of a row.

Groups run along the last dim — the reduction dim ``in`` of a Linear weight (out, in) — and never
straddle rows. Each group keeps exactly ``n`` slots, the layout sparse tensor cores read:

* ``values`` (..., rows, cols/m*n): the kept values, in column order within each group;
* ``indices`` (same shape): each slot's position 0..m-1 inside its group, strictly increasing,
  packed as ``bits`` = 1, 2, 4 or 8 bits per slot (2 bits for 2:4, like NVIDIA's metadata)
  into a uint8 ``meta`` (..., rows, ceil(slots*bits/8)).

A group with fewer than ``n`` nonzeros fills its spare slots with zeros at free positions, so
``nnz`` (stored slots) is always numel*n/m. Leading batch dims are allowed for the round trip;
``@``, ``row`` and ``col`` need a 2-D matrix. The row length must be a multiple of ``m``: pad
with zeros (``torch.nn.functional.pad(t, (0, pad))``) otherwise; nothing is padded silently.
Costs: ``row(i)`` O(1) to locate, O(cols*n/m) to read; ``col(j)`` O(rows*n) (only the slots of
group j//m are looked at); ``@`` O(rows*cols*n/m*k) by a gather (the reference path; torch's
semi-structured kernels are CUDA-only).
"""

from __future__ import annotations

import torch

from sparsetorch._checks import is_int
from sparsetorch.formats import _reference
from sparsetorch.formats._base import (
    SparseFormat,
    SparseVector,
    check_dense_input,
    check_float,
    check_shape,
    invariant,
    same_device,
)
from sparsetorch.formats._compressed import compress_rows


def check_nm(n: object, m: object) -> tuple[int, int]:
    if not (is_int(n) and is_int(m) and 1 <= n <= m <= 256):
        raise ValueError(f"N:M needs ints 1 <= n <= m <= 256, got n={n!r}, m={m!r}")
    return int(n), int(m)


def _is_integer_dtype(dtype: torch.dtype) -> bool:
    return not (dtype.is_floating_point or dtype.is_complex or dtype == torch.bool)


def meta_bits(m: int) -> int:
    """Bits per slot index: the smallest of 1, 2, 4, 8 that counts to m - 1."""
    return next(b for b in (1, 2, 4, 8) if (1 << b) >= m)


def pack(indices: torch.Tensor, bits: int) -> torch.Tensor:
    """(..., slots) ints < 2**bits -> (..., ceil(slots*bits/8)) uint8, first slot in low bits."""
    per = 8 // bits
    slots = indices.shape[-1]
    pad = -slots % per
    padded = torch.nn.functional.pad(indices.to(torch.uint8), (0, pad))
    grouped = padded.reshape(*indices.shape[:-1], padded.shape[-1] // per, per).to(
        torch.int32
    )  # (..., bytes, per)
    shifts = torch.arange(0, 8, bits, device=indices.device, dtype=torch.int32)
    return (grouped << shifts).sum(-1).to(torch.uint8)


def unpack(meta: torch.Tensor, bits: int, slots: int) -> torch.Tensor:
    """Inverse of :func:`pack`: (..., bytes) uint8 -> (..., slots) int64."""
    per = 8 // bits
    shifts = torch.arange(0, 8, bits, device=meta.device, dtype=torch.int32)
    fields = (meta.to(torch.int32).unsqueeze(-1) >> shifts) & ((1 << bits) - 1)
    return fields.reshape(*meta.shape[:-1], meta.shape[-1] * per)[..., :slots].long()


def _check_row_length(shape: tuple[int, ...], m: int) -> None:
    if len(shape) < 2:
        raise ValueError(f"NM needs a tensor of at least 2 dims (..., rows, cols), got {shape}")
    if shape[-1] % m:
        pad = -shape[-1] % m
        raise ValueError(
            f"NM groups of m={m} must tile the row: the last dim {shape[-1]} is not a multiple "
            f"of {m}; pad each row with {pad} zeros (torch.nn.functional.pad(t, (0, {pad}))) "
            f"or use another format"
        )


class NM(SparseFormat):
    name = "nm"

    def __init__(
        self, values: torch.Tensor, indices: torch.Tensor, shape: tuple[int, ...], n: int, m: int
    ) -> None:
        """From kept ``values`` and their in-group positions ``indices`` (..., rows, cols/m*n)."""
        self.n, self.m = check_nm(n, m)
        self.shape = check_shape(shape, ndim=None)
        _check_row_length(self.shape, m)
        check_float(values, "values")
        if not isinstance(indices, torch.Tensor) or not _is_integer_dtype(indices.dtype):
            got = indices.dtype if isinstance(indices, torch.Tensor) else type(indices).__name__
            raise TypeError(f"indices must be an integer tensor of in-group positions, got {got}")
        slots_shape = (*self.shape[:-1], self.shape[-1] // m * n)
        if tuple(values.shape) != slots_shape or tuple(indices.shape) != slots_shape:
            raise ValueError(
                f"values and indices must both have shape {slots_shape} for {n}:{m} of "
                f"{self.shape}, got {tuple(values.shape)} and {tuple(indices.shape)}"
            )
        same_device("NM", values=values, indices=indices)
        _check_positions(indices, n, m)
        self.bits = meta_bits(m)
        self.meta = pack(indices, self.bits)  # (..., rows, ceil(slots*bits/8)) uint8
        self._values = values.contiguous()  # (..., rows, cols/m*n)

    def arrays(self) -> dict[str, torch.Tensor]:
        return {"values": self._values, "meta": self.meta}

    @property
    def indices(self) -> torch.Tensor:
        """In-group position of every slot (..., rows, cols/m*n) int64 (unpacked meta)."""
        return unpack(self.meta, self.bits, self._values.shape[-1])

    def column_indices(self) -> torch.Tensor:
        """Column of every slot (..., rows, cols/m*n) int64."""
        slots = self._values.shape[-1]
        group = torch.arange(slots, device=self.device) // self.n  # (slots,)
        return group * self.m + self.indices

    @classmethod
    def from_dense(cls, t: torch.Tensor, n: int = 2, m: int = 4) -> NM:
        """Raises ValueError when a group holds more than ``n`` nonzeros (prune to N:M first)."""
        n, m = check_nm(n, m)
        check_dense_input(t, "NM.from_dense input")
        if t.layout != torch.strided:
            raise TypeError(f"NM.from_dense takes a dense (strided) tensor, got {t.layout}")
        _check_row_length(tuple(t.shape), m)
        groups = t.reshape(*t.shape[:-1], t.shape[-1] // m, m)  # (..., rows, cols/m, m)
        nonzero = groups != 0
        counts = nonzero.sum(-1)
        if counts.numel() and int(counts.max()) > n:
            where = [int(i) for i in (counts > n).nonzero()[0]]
            raise ValueError(
                f"tensor is not {n}:{m} sparse: group {where[-1]} of row {tuple(where[:-1])} "
                f"holds {int(counts[tuple(where)])} nonzeros > n={n} (prune it to {n}:{m} first)"
            )
        # nonzeros first, then free positions, each in column order; keep n, sorted
        position = torch.arange(m, device=t.device)
        rank = torch.where(nonzero, position, position + m)
        kept = rank.argsort(dim=-1)[..., :n].sort(dim=-1).values  # (..., rows, cols/m, n)
        values = groups.gather(-1, kept)
        slots = (*t.shape[:-1], t.shape[-1] // m * n)
        return cls(values.reshape(slots), kept.reshape(slots), tuple(t.shape), n, m)

    def to_dense(self) -> torch.Tensor:
        groups_shape = (*self.shape[:-1], self.shape[-1] // self.m)
        out = self._values.new_zeros(*groups_shape, self.m)
        index = self.indices.reshape(*groups_shape, self.n)
        out.scatter_(-1, index, self._values.reshape(*groups_shape, self.n))
        return out.reshape(self.shape)

    def row(self, i: int) -> SparseVector:
        i = self._check_position(i, 0)
        slots = self._values.shape[-1]
        group = torch.arange(slots, device=self.device) // self.n  # (slots,)
        cols = group * self.m + unpack(self.meta[i], self.bits, slots)
        return SparseVector(cols, self._values[i], self.shape[1])

    def col(self, j: int) -> SparseVector:
        j = self._check_position(j, 1)
        first = j // self.m * self.n  # the group's n slots
        per = 8 // self.bits  # unpack only the bytes that hold the group's slots
        byte0, byte1 = first // per, -(-(first + self.n) // per)
        positions = unpack(self.meta[:, byte0:byte1], self.bits, (byte1 - byte0) * per)
        positions = positions[:, first - byte0 * per : first - byte0 * per + self.n]  # (rows, n)
        rows, slot = (positions == j % self.m).nonzero(as_tuple=True)
        return SparseVector(rows, self._values[rows, first + slot], self.shape[0])

    def _matmul(self, x: torch.Tensor) -> torch.Tensor:
        return _reference.spmm_rows(self.column_indices(), self._values, x)

    def to_csr(self):
        """Drops the zeros held in slots (padding of groups with fewer than n nonzeros)."""
        from sparsetorch.formats.csr import CSR

        if self.dim != 2:
            raise ValueError(f"to_csr needs a 2-D NM matrix, shape {self.shape}")
        keep = self._values != 0  # (rows, slots)
        rows, slot = keep.nonzero(as_tuple=True)  # row-major, columns increase along slots
        cols = self.column_indices()[rows, slot]
        row_ptr = compress_rows(rows, self.shape[0], torch.int64)
        return CSR(row_ptr, cols, self._values[rows, slot], self.shape)

    def to_nm(self, n: int = 2, m: int = 4) -> NM:
        return self if (n, m) == (self.n, self.m) else super().to_nm(n, m)

    def __repr__(self) -> str:
        return super().__repr__().replace("NM(", f"NM({self.n}:{self.m}, ", 1)


def _check_positions(indices: torch.Tensor, n: int, m: int) -> None:
    if indices.numel() == 0:
        return
    bad = (indices < 0) | (indices >= m)
    if bad.any():
        where = tuple(int(i) for i in bad.nonzero()[0])
        raise invariant(
            "NM", f"0 <= indices < m={m}", f"indices{list(where)} = {int(indices[where])}"
        )
    groups = indices.reshape(
        *indices.shape[:-1], indices.shape[-1] // n, n
    )  # (..., rows, groups, n)
    unsorted = groups.diff(dim=-1) <= 0
    if unsorted.any():
        where = [int(i) for i in unsorted.nonzero()[0]]
        raise invariant(
            "NM",
            f"the {n} positions of a group strictly increase (at most {n} of every {m}, "
            f"no position twice)",
            f"row {tuple(where[:-2])} group {where[-2]}: {groups[tuple(where[:-1])].tolist()}",
        )
