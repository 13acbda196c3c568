"""Fast sparse kernels, each with a reference twin.

- ``nm_triton.nm_linear_triton``: 2:4 skinny GEMM for decode (Triton, CUDA); twin
  ``nm_reference.nm_linear_reference``.
- ``cpu``: sparse Linear training and inference kernels for the CPU (C++, compiled on first
  use or by ``make``); twin ``cpu.reference`` (docs/cpu_kernels.md).
"""

from sparsetorch.kernels.nm_reference import (
    compress_2to4,
    decompress_2to4,
    is_2to4,
    nm_linear_reference,
)

__all__ = ["compress_2to4", "decompress_2to4", "is_2to4", "nm_linear_reference"]
