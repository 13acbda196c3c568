"""Reference twin of the 2:4 kernels: the same arguments, decompressed and multiplied in plain
PyTorch.

The compressed weight is a :class:`sparsetorch.formats.NM` with n=2, m=4 (build it with
``NM.from_dense(w, 2, 4)`` and pass its ``values`` and ``meta``):
    values: (out, in/2)  the two kept values of each group of 4, in column order
    meta:   (out, in/8)  uint8; each byte packs the 2-bit in-group positions of the 4 kept values
                         of two consecutive groups: bits [2j, 2j+1] hold position j (j = 0..3)
Bytes: values out*in/2*elt + meta out*in/8, i.e. 56.25% of dense bf16/fp16.
"""

from __future__ import annotations

import torch

from sparsetorch.formats.nm import dense_from_meta


def nm_linear_reference(
    x: torch.Tensor, values: torch.Tensor, meta: torch.Tensor, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """y = x @ W.T + b with W given compressed; x (M, in) -> (M, out)."""
    y = x @ dense_from_meta(values, meta, 2, 4).T
    return y if bias is None else y + bias
