"""Array exchange with scipy.sparse (CPU, sharing memory where numpy can).

scipy.sparse holds float32/float64 values (no float16 in most formats, no bfloat16 at all), so
half-precision formats must be converted by the caller: an implicit upcast would change nbytes.
"""

from __future__ import annotations

import numpy as np
import torch

SCIPY_DTYPES = (torch.float32, torch.float64)


def to_numpy(t: torch.Tensor) -> np.ndarray:
    """Index arrays as they are; values only in a dtype scipy.sparse supports."""
    if t.is_floating_point() and t.dtype not in SCIPY_DTYPES:
        raise TypeError(
            f"scipy.sparse holds float32/float64 values, this format holds {t.dtype}; build it "
            f"from a float32 tensor (e.g. CSR.from_dense(t.float())) first"
        )
    return t.detach().cpu().numpy()


def to_tensor(a: np.ndarray) -> torch.Tensor:
    if a.dtype not in (np.float32, np.float64):
        raise TypeError(f"scipy matrix must hold float32/float64 values, got {a.dtype}")
    return torch.from_numpy(np.ascontiguousarray(a))


def check_scipy(a: object) -> None:
    import scipy.sparse

    if not scipy.sparse.issparse(a):
        raise TypeError(f"from_scipy takes a scipy.sparse array or matrix, got {type(a).__name__}")
