"""Masked dense attention with its rows' log-sum-exp, in the band kernel's contract: the plain
torch form that pieces merged by log-sum-exp (``bands.merge_lse``) can be checked or completed
with."""

from __future__ import annotations

import torch
from torch import Tensor

from sparsetorch.kernels.band_attention import LOG2E


def masked_lse(
    q: Tensor, k: Tensor, v: Tensor, allowed: Tensor, scale: float
) -> tuple[Tensor, Tensor]:
    """softmax(q kᵀ · scale) v over the ``allowed`` keys (a mask broadcast to (B, H, m, nk); k and
    v with H heads): (out (B, H, m, D) in q's dtype, lse (B, H, m) in log2 units, +inf for a
    row without keys, whose out is zeros); float32 work, float64 for float64 inputs."""
    work = torch.promote_types(q.dtype, torch.float32)  # float64 stays float64
    scores = (q.to(work) @ k.to(work).transpose(-1, -2)) * scale
    scores = scores.masked_fill(~allowed, float("-inf"))
    lse = torch.logsumexp(scores, -1)  # natural units; -inf for a row without keys
    p = torch.exp(scores - torch.where(torch.isinf(lse), 0.0, lse)[..., None])
    out = (p @ v.to(work)).to(q.dtype)
    return out, torch.where(torch.isinf(lse), float("inf"), lse * LOG2E)
