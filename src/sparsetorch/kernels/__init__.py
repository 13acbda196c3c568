"""Fast sparse kernels, each with a reference twin. They take the arrays of a
``sparsetorch.formats`` container, never a representation of their own:

- ``nm_triton.nm_linear_triton``: 2:4 skinny GEMM for decode (Triton, CUDA) on
  ``formats.NM(n=2, m=4)``'s ``values`` and ``meta``; twin ``nm_reference.nm_linear_reference``.
- ``bsr_triton.bsr_linear_triton``: block-sparse GEMM (Triton, CUDA) on ``formats.BSR``'s
  ``values``, ``row_ptr`` and ``col_indices`` (square blocks of 16..128); twin
  ``formats.BSR.matmul_reference``.
- ``finite_triton.clean_nonfinite_triton``: non-finite keys and values cleaned in one pass
  (Triton, CUDA) for attention's containment; twin
  ``attention.backends.nonfinite.split_torch``.
- ``cpu``: sparse Linear training and inference kernels for the CPU (C++, compiled on first
  use or by ``make``); twin ``cpu.reference`` (docs/cpu_kernels.md).
"""

from sparsetorch.kernels.nm_reference import nm_linear_reference

__all__ = ["nm_linear_reference"]
