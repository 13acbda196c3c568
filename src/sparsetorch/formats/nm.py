"""Compressed N:M: at most ``n`` nonzeros in every group of ``m`` consecutive elements of a row.

Groups run along the last dim — the reduction dim ``in`` of a Linear weight (out, in) — and never
straddle rows. Each group keeps exactly ``n`` slots, the arrays sparse tensor cores read:

* ``values`` (..., rows, cols/m*n): the kept values, in column order within each group;
* ``indices`` (same shape): each slot's position 0..m-1 inside its group, strictly increasing,
  packed as ``bits`` = 1, 2, 4 or 8 bits per slot (2 bits for 2:4, like NVIDIA's metadata)
  into a uint8 ``meta`` (..., rows, ceil(slots*bits/8)), the first slot in the low bits. For
  2:4 with ``cols % 8 == 0`` one byte holds the four 2-bit positions of two consecutive groups:
  the compressed weight our Triton 2:4 kernels (``sparsetorch.kernels``) read.

A group with fewer than ``n`` nonzeros fills its spare slots with zeros at free positions, so
``nnz`` (stored slots) is always numel*n/m. Leading batch dims are allowed for the round trip;
``@``, ``row`` and ``col`` need a 2-D matrix. The row length must be a multiple of ``m``: pad
with zeros (``torch.nn.functional.pad(t, (0, pad))``) otherwise; nothing is padded silently.
Costs: ``row(i)`` O(1) to locate, O(cols*n/m) to read; ``col(j)`` O(rows*n) (only the slots of
group j//m are looked at); ``@`` O(rows*cols*n/m*k) by a gather (the reference path; torch's
semi-structured kernels are CUDA-only).

The N:M question itself lives here, once, for every layer of the package: :func:`group_counts`
counts the nonzeros (or True entries of a mask) of every group, :func:`is_nm` answers "is this
N:M?", and :func:`as_rows` gives the matrix whose rows a weight of any rank is grouped along
(the input channels last: NVIDIA ASP's convention for conv weights).
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


def check_nm_args(n: object, m: object) -> tuple[int, int]:
    """``(n, m)`` when they are ints with 1 <= n <= m <= 256, else one ValueError."""
    if not (is_int(n) and is_int(m) and 1 <= n <= m <= 256):
        raise ValueError(f"N:M needs ints 1 <= n <= m <= 256, got n={n!r}, m={m!r}")
    return int(n), int(m)


def _is_integer_dtype(dtype: torch.dtype) -> bool:
    return not (dtype.is_floating_point or dtype.is_complex or dtype == torch.bool)


# ---- the N:M constraint ------------------------------------------------------------------


def as_rows(x: torch.Tensor) -> torch.Tensor:
    """The weight ``x`` as the matrix ``(rows, in)`` whose rows N:M groups run along, with the
    input-channel dim (dim 1) last: a Linear weight ``(out, in)`` is itself, a conv weight
    ``(out, in, kh, kw)`` is ``(out*kh*kw, in)`` (groups of input channels at each kernel
    position, the reduction order of an NHWC implicit GEMM, as NVIDIA ASP), a 1-D one one row.
    A view when no dim moves, else a copy."""
    if x.dim() == 1:
        return x.reshape(1, -1)
    if x.dim() == 2:
        return x
    return x.movedim(1, -1).reshape(-1, x.shape[1])  # (out*k..., in)


def from_rows(rows: torch.Tensor, shape: torch.Size | tuple[int, ...]) -> torch.Tensor:
    """Inverse of :func:`as_rows`: the ``(rows, in)`` matrix back in the weight's ``shape``."""
    if len(shape) <= 2:
        return rows.reshape(shape)
    moved = (shape[0], *shape[2:], shape[1])
    return rows.reshape(moved).movedim(-1, 1)


def group_counts(t: torch.Tensor, m: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Nonzeros (True entries of a bool mask) in every group of ``m`` consecutive elements along
    the last dim: full groups ``(..., cols // m)`` and the trailing partial group of
    ``cols % m`` elements ``(...,)``, or None when ``m`` divides ``cols``. Counts are int16
    (int32 for m > 32767): cheap on the large masks a checkpoint holds."""
    if not isinstance(t, torch.Tensor) or t.dim() == 0:
        raise ValueError(f"group_counts needs a tensor of at least 1 dim, got {t!r}")
    if not isinstance(m, int) or m < 1:
        raise ValueError(f"group size m must be a positive int, got {m!r}")
    nonzero = t if t.dtype == torch.bool else t != 0
    cols = t.shape[-1]
    full = cols // m * m
    count = torch.int16 if m <= torch.iinfo(torch.int16).max else torch.int32
    counts = nonzero[..., :full].reshape(*t.shape[:-1], cols // m, m).sum(-1, dtype=count)
    partial = nonzero[..., full:].sum(-1, dtype=count) if full < cols else None
    return counts, partial


def is_nm(t: torch.Tensor, n: int, m: int, partial_n: int | None = None) -> bool:
    """Whether every group of ``m`` consecutive elements along the last dim of ``t`` holds at
    most ``n`` nonzeros (True entries of a bool mask): the N:M constraint, the one check used
    by formats, kernels, deploy, patterns and checkpoints. A trailing partial group (when ``m``
    does not divide the row) may hold at most ``partial_n``; the default ``n`` is what
    zero-padding the row to a multiple of ``m`` makes a valid N:M row."""
    n, m = check_nm_args(n, m)
    counts, partial = group_counts(t, m)
    if bool((counts > n).any()):
        return False
    return partial is None or not bool((partial > (n if partial_n is None else partial_n)).any())


def is_exactly_nm(t: torch.Tensor, n: int, m: int) -> bool:
    """Whether every group of ``m`` along the last dim holds exactly ``n`` nonzeros (and ``m``
    divides the row): a full N:M mask, what stores ``n`` positions per group without padding."""
    n, m = check_nm_args(n, m)
    counts, partial = group_counts(t, m)
    return partial is None and bool((counts == n).all())


def check_nm(t: torch.Tensor, n: int, m: int, name: str = "tensor") -> None:
    """Raise ValueError naming the first group of ``t`` holding more than ``n`` nonzeros."""
    n, m = check_nm_args(n, m)
    counts, partial = group_counts(t, m)
    if partial is not None:
        raise ValueError(f"{name}: the last dim {t.shape[-1]} is not a multiple of m={m}")
    over = counts > n
    if bool(over.any()):
        where = [int(i) for i in over.nonzero()[0]]
        raise ValueError(
            f"{name} is not {n}:{m} sparse: group {where[-1]} of row {tuple(where[:-1])} "
            f"holds {int(counts[tuple(where)])} nonzeros > n={n} (prune it to {n}:{m} first)"
        )


# ---- the packed positions ------------------------------------------------------------------


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


_BITS = {2: torch.int16, 4: torch.int32, 8: torch.int64}


def as_bits(t: torch.Tensor) -> torch.Tensor:
    """``t`` viewed as integers of its size when it is floating and needs no gradient: gather
    and scatter move those bit for bit (on the CPU, torch 2.13's bfloat16 gather and scatter
    turn every NaN into 0xFFFF, payload lost)."""
    if t.is_floating_point() and not t.requires_grad:
        return t.view(_BITS[t.element_size()])
    return t


def dense_from_meta(values: torch.Tensor, meta: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """The dense (..., rows, cols) tensor of kept ``values`` (..., rows, cols/m*n) and their
    packed positions ``meta``, unchecked: plain tensor ops, so kernels' reference twins run it
    per call and torch.compile traces it."""
    *lead, slots = values.shape
    groups = slots // n
    out = values.new_zeros(*lead, groups, m)  # (..., rows, cols/m, m)
    index = unpack(meta, meta_bits(m), slots).reshape(*lead, groups, n)
    kept = values.reshape(*lead, groups, n)
    if kept.requires_grad:  # autograd through the values (no bit view)
        out = out.scatter(-1, index, kept)
    else:
        as_bits(out).scatter_(-1, index, as_bits(kept))
    return out.reshape(*lead, groups * m)


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
        self.n, self.m = check_nm_args(n, m)
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
        n, m = check_nm_args(n, m)
        check_dense_input(t, "NM.from_dense input")
        if t.layout != torch.strided:
            raise TypeError(f"NM.from_dense takes a dense (strided) tensor, got {t.layout}")
        _check_row_length(tuple(t.shape), m)
        check_nm(t, n, m)
        groups = t.reshape(*t.shape[:-1], t.shape[-1] // m, m)  # (..., rows, cols/m, m)
        # nonzeros first, then free positions, each in column order; keep n, sorted
        position = torch.arange(m, device=t.device)
        rank = torch.where(groups != 0, position, position + m)
        kept = rank.argsort(dim=-1)[..., :n].sort(dim=-1).values  # (..., rows, cols/m, n)
        values = as_bits(groups).gather(-1, kept).view(t.dtype)
        slots = (*t.shape[:-1], t.shape[-1] // m * n)
        return cls(values.reshape(slots), kept.reshape(slots), tuple(t.shape), n, m)

    @classmethod
    def from_meta(
        cls, values: torch.Tensor, meta: torch.Tensor, shape: tuple[int, ...], n: int, m: int
    ) -> NM:
        """From kept ``values`` (..., rows, cols/m*n) and their packed positions ``meta``, the
        arrays a kernel takes (checked like the constructor's)."""
        n, m = check_nm_args(n, m)
        if not isinstance(meta, torch.Tensor) or meta.dtype != torch.uint8:
            got = meta.dtype if isinstance(meta, torch.Tensor) else type(meta).__name__
            raise TypeError(f"meta must be a uint8 tensor of packed positions, got {got}")
        slots = values.shape[-1] if isinstance(values, torch.Tensor) and values.dim() else 0
        width = -(-slots * meta_bits(m) // 8)
        if tuple(meta.shape) != (*values.shape[:-1], width):
            raise ValueError(
                f"meta must have shape {(*values.shape[:-1], width)} for values of shape "
                f"{tuple(values.shape)} ({meta_bits(m)} bits per slot), got {tuple(meta.shape)}"
            )
        return cls(values, unpack(meta, meta_bits(m), slots), shape, n, m)

    def to_dense(self) -> torch.Tensor:
        return dense_from_meta(self._values, self.meta, self.n, self.m)

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
