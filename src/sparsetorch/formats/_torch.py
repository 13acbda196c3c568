"""Building torch sparse tensors from our arrays without copies or torch's beta warnings."""

from __future__ import annotations

import warnings

import torch

# torch's CPU kernels (MKL) for CSR/BSR @ dense cover these dtypes (not float16/bfloat16);
# other devices use our reference paths here (their fast paths live in kernels/ and deploy/)
TORCH_SPMM_DTYPES = (torch.float32, torch.float64)


def has_spmm(values: torch.Tensor) -> bool:
    """Whether torch's sparse @ dense kernel (measured on CPU) takes these values."""
    return values.device.type == "cpu" and values.dtype in TORCH_SPMM_DTYPES


def compressed(
    layout: torch.layout,
    row_ptr: torch.Tensor,
    col_indices: torch.Tensor,
    values: torch.Tensor,
    shape: tuple[int, ...],
) -> torch.Tensor:
    """A torch sparse CSR/BSR tensor over our (already validated) arrays."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Sparse \w+ tensor support is in beta")
        return torch.sparse_compressed_tensor(
            row_ptr, col_indices, values, shape, layout=layout, check_invariants=False
        )


def require_layout(t: torch.Tensor, layout: torch.layout, fmt: str, hint: str) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{fmt}.from_torch takes a torch.Tensor, got {type(t).__name__}")
    if t.layout != layout:
        raise TypeError(f"{fmt}.from_torch takes layout {layout}, got {t.layout}; {hint}")
    if t.dim() != 2:
        raise ValueError(f"{fmt}.from_torch takes a 2-D tensor, got shape {tuple(t.shape)}")
