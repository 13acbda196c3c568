"""What every format shares: shape/dtype/device/nnz/nbytes/density, checked ``@``, conversions.

A format is an immutable container of a few flat tensors (``arrays()``); ``nbytes`` is the sum
of their sizes, so it is the true memory held, indices and metadata included.

Zero means ``== 0``: ``from_dense`` stores no zeros of either sign, so the round trip
``from_dense(t).to_dense()`` is bitwise exact except that ``-0.0`` comes back as ``+0.0``
(NaN and inf are kept bit for bit).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar, NamedTuple

import torch

from sparsetorch._checks import check_not_meta

if TYPE_CHECKING:
    import scipy.sparse

    from sparsetorch.formats.bsr import BSR
    from sparsetorch.formats.coo import COO
    from sparsetorch.formats.csr import CSR
    from sparsetorch.formats.nm import NM

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
# half types are accumulated in float32 by the reference paths
_ACCUMULATE = {torch.float16: torch.float32, torch.bfloat16: torch.float32}


class SparseVector(NamedTuple):
    """One row or column: the stored entries at ``indices`` (sorted) of a vector of ``size``."""

    indices: torch.Tensor  # (k,) int64
    values: torch.Tensor  # (k,)
    size: int

    def to_dense(self) -> torch.Tensor:
        out = torch.zeros(self.size, dtype=self.values.dtype, device=self.values.device)
        return out.index_copy_(0, self.indices, self.values)


def index_dtype(largest: int) -> torch.dtype:
    """The smallest index dtype torch's sparse kernels accept that holds ``largest``."""
    return torch.int32 if largest <= torch.iinfo(torch.int32).max else torch.int64


def accumulate_dtype(dtype: torch.dtype) -> torch.dtype:
    return _ACCUMULATE.get(dtype, dtype)


def check_float(t: torch.Tensor, name: str) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in FLOAT_DTYPES:
        allowed = ", ".join(str(d) for d in FLOAT_DTYPES)
        raise TypeError(f"{name} must have a floating dtype ({allowed}), got {t.dtype}")


def check_dense_input(t: torch.Tensor, name: str) -> None:
    """A from_dense input: a floating tensor holding data (its values are read)."""
    check_float(t, name)
    check_not_meta(t, name)


def check_dense_2d(t: torch.Tensor, fmt: str) -> None:
    check_dense_input(t, f"{fmt}.from_dense input")
    if t.layout != torch.strided:
        raise TypeError(f"{fmt}.from_dense takes a dense (strided) tensor, got layout {t.layout}")
    if t.dim() != 2:
        raise ValueError(
            f"{fmt}.from_dense takes a 2-D tensor (rows, cols), got {t.dim()}-D "
            f"shape {tuple(t.shape)}; reshape it first, e.g. t.reshape(t.shape[0], -1)"
        )


def check_shape(shape: tuple[int, ...] | torch.Size, ndim: int | None = 2) -> tuple[int, ...]:
    shape = tuple(shape)
    if (ndim is not None and len(shape) != ndim) or not all(
        isinstance(s, int) and s >= 0 for s in shape
    ):
        want = f"{ndim} non-negative ints" if ndim else "non-negative ints"
        raise ValueError(f"shape must be {want}, got {shape}")
    return shape


def check_index(t: torch.Tensor, name: str, ndim: int = 1) -> None:
    if not isinstance(t, torch.Tensor) or t.dtype not in (torch.int32, torch.int64):
        got = t.dtype if isinstance(t, torch.Tensor) else type(t).__name__
        raise TypeError(f"{name} must be an int32 or int64 tensor, got {got}")
    if t.dim() != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {tuple(t.shape)}")


def invariant(fmt: str, rule: str, detail: str) -> ValueError:
    return ValueError(f"{fmt} invariant violated: {rule} ({detail})")


def same_device(fmt: str, **tensors: torch.Tensor) -> None:
    devices = {name: t.device for name, t in tensors.items()}
    if len(set(devices.values())) > 1:
        raise ValueError(f"{fmt} arrays must share one device, got {devices}")


class SparseFormat(ABC):
    """Base of CSR, COO, BSR and NM."""

    name: ClassVar[str]
    shape: tuple[int, ...]

    # ---- what is held -------------------------------------------------------------------
    @abstractmethod
    def arrays(self) -> dict[str, torch.Tensor]:
        """The tensors this format holds, by name (values first)."""

    @property
    def values(self) -> torch.Tensor:
        return self.arrays()["values"]

    @property
    def dtype(self) -> torch.dtype:
        return self.values.dtype

    @property
    def device(self) -> torch.device:
        return self.values.device

    @property
    def nnz(self) -> int:
        """Stored values (explicit zeros included: BSR block fill, N:M padding)."""
        return self.values.numel()

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n

    @property
    def density(self) -> float:
        """Stored fraction ``nnz / numel`` (0.0 for an empty shape)."""
        return self.nnz / self.numel if self.numel else 0.0

    @property
    def nbytes(self) -> int:
        """True bytes of the arrays held (values, indices, metadata)."""
        return sum(t.numel() * t.element_size() for t in self.arrays().values())

    # ---- dense round trip ---------------------------------------------------------------
    @classmethod
    @abstractmethod
    def from_dense(cls, t: torch.Tensor) -> SparseFormat: ...

    @abstractmethod
    def to_dense(self) -> torch.Tensor: ...

    # ---- access ---------------------------------------------------------------------------
    @abstractmethod
    def row(self, i: int) -> SparseVector: ...

    @abstractmethod
    def col(self, j: int) -> SparseVector: ...

    def _check_position(self, index: int, axis: int) -> int:
        if self.dim != 2:
            raise ValueError(f"{self.name} row/col access needs a 2-D matrix, shape {self.shape}")
        size = self.shape[axis]
        if not isinstance(index, int) or not -size <= index < size:
            which = ("row", "col")[axis]
            raise ValueError(f"{which} index must be an int in [{-size}, {size}), got {index!r}")
        return index % size

    @property
    def dim(self) -> int:
        return len(self.shape)

    # ---- products -------------------------------------------------------------------------
    def __matmul__(self, other: torch.Tensor) -> torch.Tensor:
        """``self @ other`` for a dense vector (cols,) -> (rows,) or matrix (cols, k) -> (rows, k)."""
        if not isinstance(other, torch.Tensor):
            return NotImplemented
        if self.dim != 2:
            raise ValueError(f"{self.name} @ needs a 2-D matrix, this one has shape {self.shape}")
        if other.dim() not in (1, 2) or other.shape[0] != self.shape[1]:
            raise ValueError(
                f"{self.name} @ operand must have shape ({self.shape[1]},) or "
                f"({self.shape[1]}, k) to match {self.shape}, got {tuple(other.shape)}"
            )
        if other.dtype != self.dtype:
            raise TypeError(f"{self.name} @ operand has dtype {other.dtype}, matrix {self.dtype}")
        if other.device != self.device:
            raise ValueError(f"{self.name} @ operand is on {other.device}, matrix on {self.device}")
        return self._matmul(other) if other.dim() == 2 else self._matvec(other)

    @abstractmethod
    def _matmul(self, x: torch.Tensor) -> torch.Tensor:
        """(rows, cols) @ (cols, k) -> (rows, k), operand already checked."""

    def _matvec(self, v: torch.Tensor) -> torch.Tensor:
        """(rows, cols) @ (cols,) -> (rows,), operand already checked."""
        return self._matmul(v.unsqueeze(1)).squeeze(1)

    # ---- conversions --------------------------------------------------------------------
    @abstractmethod
    def to_csr(self) -> CSR: ...

    def to_coo(self) -> COO:
        return self.to_csr().to_coo()

    def to_bsr(self, blocksize: tuple[int, int]) -> BSR:
        return self.to_csr().to_bsr(blocksize)

    def to_nm(self, n: int = 2, m: int = 4) -> NM:
        """Only when every group of ``m`` along a row holds at most ``n`` nonzeros."""
        from sparsetorch.formats.nm import NM

        return NM.from_dense(self.to_dense(), n=n, m=m)

    def to_scipy(self) -> scipy.sparse.sparray:
        return self.to_csr().to_scipy()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(shape={self.shape}, nnz={self.nnz}, dtype={self.dtype}, "
            f"device={self.device}, density={self.density:.4g}, nbytes={self.nbytes})"
        )
