"""Sparse formats: CSR, COO, BSR (blocks) and NM (compressed N:M), with exact dense round trips,
true ``nbytes``, row/column access, ``@`` and interop with torch.sparse and scipy.sparse.

``FORMATS`` resolves a name to an encoder ``dense -> format``: ``"csr"``, ``"coo"``,
``"bsr"`` (pass ``blocksize=``) or ``"bsrHxW"``, ``"nm"`` (2:4 unless ``n=``/``m=``) or
``"nmN:M"``, and ``"dense"`` (the tensor itself, for comparison). :func:`best_format` picks the
smallest encoding of a tensor.

These are the package's only representations of a sparse weight: ``kernels``, ``deploy`` and
the checkpoint N:M codec take their arrays, and :func:`is_nm` (``formats.nm``) is the one
answer to "is this N:M?".
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

import torch

from sparsetorch._registry import Registry
from sparsetorch.formats._base import FLOAT_DTYPES, SparseFormat, SparseVector
from sparsetorch.formats.bsr import BSR
from sparsetorch.formats.coo import COO
from sparsetorch.formats.csr import CSR
from sparsetorch.formats.nm import NM, group_counts, is_nm

Encoder = Callable[[torch.Tensor], "SparseFormat | torch.Tensor"]
FORMATS: Registry[Encoder] = Registry("format")

FORMATS.register("dense")(lambda: torch.Tensor.contiguous)
FORMATS.register("csr")(lambda: CSR.from_dense)
FORMATS.register("coo")(lambda: COO.from_dense)


@FORMATS.register("bsr")
def _bsr(blocksize: tuple[int, int]) -> Encoder:
    return partial(BSR.from_dense, blocksize=tuple(blocksize))


@FORMATS.register("nm")
def _nm(n: int = 2, m: int = 4) -> Encoder:
    return partial(NM.from_dense, n=n, m=m)


FORMATS.register_pattern(r"bsr(\d+)x(\d+)", "bsrHxW")(lambda h, w: _bsr((h, w)))
FORMATS.register_pattern(r"nm(\d+):(\d+)", "nmN:M")(lambda n, m: _nm(n, m))

# what best_format tries besides dense, csr and coo
BEST_BLOCKSIZES = (2, 4, 8, 16, 32)
BEST_GROUPS = (4, 8, 16)


def candidates(t: torch.Tensor) -> list[str]:
    """The FORMATS names that can hold the 2-D tensor ``t``: dense, csr, coo, every square BSR
    block in BEST_BLOCKSIZES dividing its shape, and for each group size m in BEST_GROUPS that
    divides its row length (the number of columns: groups run along rows), N:M with the
    smallest n that holds (when n < m)."""
    rows, cols = t.shape
    names = ["dense", "csr", "coo"]
    names += [f"bsr{b}x{b}" for b in BEST_BLOCKSIZES if rows % b == 0 and cols % b == 0]
    for m in BEST_GROUPS:
        if cols % m == 0 and t.numel():
            n = max(1, int(group_counts(t, m)[0].max()))  # the smallest n that holds
            if n < m:
                names.append(f"nm{n}:{m}")
    return names


def best_format(t: torch.Tensor) -> tuple[str, int]:
    """(name, nbytes) of the smallest encoding of ``t`` among :func:`candidates`; ties go to the
    simpler format (dense first). Tensors with more than 2 dims (conv weights) are viewed as
    (shape[0], -1), the rows of their reduction dim. ``FORMATS.build(name)`` rebuilds it."""
    if not isinstance(t, torch.Tensor) or t.dim() < 2:
        got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
        raise ValueError(f"best_format takes a tensor of at least 2 dims, got {got}")
    t = t.detach().reshape(t.shape[0], math.prod(t.shape[1:]))
    best: tuple[str, int] | None = None
    for name in candidates(t):
        nbytes = FORMATS.build(name)(t).nbytes
        if best is None or nbytes < best[1]:
            best = (name, nbytes)
    return best


__all__ = [
    "BSR",
    "COO",
    "CSR",
    "FLOAT_DTYPES",
    "FORMATS",
    "NM",
    "SparseFormat",
    "SparseVector",
    "best_format",
    "candidates",
    "is_nm",
]
