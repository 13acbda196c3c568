"""Reference twin of the 2:4 kernels: compress a 2:4 weight and multiply, in plain PyTorch.

Compressed layout (the one our Triton kernel reads):
    values: (out, in/2)  the two kept values of each group of 4, in column order
    meta:   (out, in/8)  uint8; each byte packs the 2-bit in-group positions of the 4 kept values
                         of two consecutive groups: bits [2j, 2j+1] hold position j (j = 0..3)
Bytes: values out*in/2*elt + meta out*in/8, i.e. 56.25% of dense bf16/fp16.
"""

from __future__ import annotations

import torch


def is_2to4(weight: torch.Tensor) -> bool:
    """Every group of 4 consecutive elements along each row has at most 2 nonzeros."""
    if weight.dim() != 2 or weight.shape[1] % 4:
        return False
    return bool(((weight.reshape(weight.shape[0], -1, 4) != 0).sum(-1) <= 2).all())


def compress_2to4(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(values (out, in/2), meta (out, in/8) uint8) of a 2:4 weight; ValueError if not 2:4."""
    out, k = weight.shape
    if k % 8:
        raise ValueError(f"2:4 compression needs in_features divisible by 8, got {k}")
    if not is_2to4(weight):
        raise ValueError("weight is not 2:4 sparse (a group of 4 has more than 2 nonzeros)")
    groups = weight.reshape(out, k // 4, 4)  # (out, G, 4)
    nonzero = groups != 0
    # pick exactly 2 positions per group: the nonzeros first, then the lowest zero positions
    order = torch.argsort((~nonzero).to(torch.int8) * 4 + torch.arange(4, device=weight.device), -1)
    pos = order[..., :2].sort(-1).values  # (out, G, 2)
    values = torch.gather(groups, -1, pos).reshape(out, k // 2)
    pos = pos.reshape(out, k // 8, 4).to(torch.uint8)  # 4 positions from two groups
    meta = pos[..., 0] | (pos[..., 1] << 2) | (pos[..., 2] << 4) | (pos[..., 3] << 6)
    return values.contiguous(), meta.contiguous()


def decompress_2to4(values: torch.Tensor, meta: torch.Tensor) -> torch.Tensor:
    out, half = values.shape
    shifts = torch.tensor([0, 2, 4, 6], device=meta.device, dtype=torch.uint8)
    pos = ((meta.unsqueeze(-1) >> shifts) & 3).reshape(out, half // 2, 2).long()  # (out, G, 2)
    dense = torch.zeros(out, half // 2, 4, dtype=values.dtype, device=values.device)
    dense.scatter_(-1, pos, values.reshape(out, half // 2, 2))
    return dense.reshape(out, half * 2)


def nm_linear_reference(
    x: torch.Tensor, values: torch.Tensor, meta: torch.Tensor, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """y = x @ W.T + b with W given compressed; x (M, in) -> (M, out)."""
    y = x @ decompress_2to4(values, meta).T
    return y if bias is None else y + bias
