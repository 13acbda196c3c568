"""CPU kernels for sparse Linear layers: forward, input gradient, the weight gradient at the
kept positions only, and optimizer steps over the kept entries; fp32 and bf16, vectorised
(``-march=native``: AVX2/FMA on x86) and threaded (torch's intra-op threads).

Two backends with the same operators (docs/cpu_kernels.md):

* ``"cpp"``: ``sparse_linear.cpp``, compiled once per machine (``build.py``);
* ``"torch"``: ``reference.py``, plain torch, used when the extension cannot be built.

:func:`ops` returns the best available (``ops("torch")`` / ``ops("cpp")`` to choose).
Operators (``Packed`` holds the index arrays: ``packed.py``):

* ``transpose_pad(x (B, n), bp) -> (n, bp) float32``: activations for the kernels;
* ``spmm(xt, B, ptr, idx, vals, perm, bias, out_dtype) -> (B, rows)``: y = x W^T with the CSR
  (forward) or dx = dy W with the CSC and ``perm`` (input gradient);
* ``sddmm(dyt, xt, ptr, idx, dense, out_dtype) -> (nnz,)``: the weight gradient at the kept
  positions (also written into ``dense`` when given);
* ``gather``, ``fill_kept``: read / set a dense tensor at the kept positions; ``permute``:
  ``vals[perm]`` (the kept values in CSC order, for the input gradient);
* ``adam_step``, ``sgd_step``: torch.optim's Adam/AdamW and SGD updates on the kept entries of
  a dense parameter, the optimizer state packed: (nnz,) tensors in CSR order (``vals`` in: the
  kept weights; out: the new ones);
* ``advise_huge_pages``: back a fresh tensor with 2 MiB pages where Linux allows (a hint).
"""

from __future__ import annotations

import types

from sparsetorch.kernels.cpu.build import load, status
from sparsetorch.kernels.cpu.packed import Packed

OPS = (
    "transpose_pad",
    "spmm",
    "sddmm",
    "gather",
    "permute",
    "fill_kept",
    "adam_step",
    "sgd_step",
    "advise_huge_pages",
)
BACKENDS = ("cpp", "torch")


def available() -> bool:
    """True when the compiled kernels load (building them on first use)."""
    return load()


def ops(backend: str | None = None) -> types.SimpleNamespace:
    """The operators of ``backend`` ("cpp" or "torch"); None: "cpp" when it loads, else
    "torch" (after one warning saying why)."""
    if backend is None:
        backend = "cpp" if load() else "torch"
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "cpp":
        if not load(warn=False):
            raise RuntimeError(f"the cpp backend is not available: {status()['error']}")
        import torch

        namespace = torch.ops.sparsetorch_cpu
        # the overloads themselves: calling the packet resolves the overload on every call
        found = {name: getattr(namespace, name).default for name in OPS}
    else:
        from sparsetorch.kernels.cpu import reference

        found = {name: getattr(reference, name) for name in OPS}
    return types.SimpleNamespace(name=backend, **found)


__all__ = ["BACKENDS", "OPS", "Packed", "available", "load", "ops", "status"]
