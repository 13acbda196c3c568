"""The dense backend: ``scaled_dot_product_attention`` with the pattern's n x n bool mask.

O(n²) memory; the baseline every sparse backend is compared with. Rows with no allowed key
are computed against all keys and then zeroed, so no kernel ever sees an all-masked row
(some fused kernels return NaN there) and their gradients are exactly zero. Non-finite keys and
values reach only the rows allowed to attend them (:mod:`.nonfinite`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from sparsetorch._eager_cache import eager_cache
from sparsetorch.attention.backends import nonfinite
from sparsetorch.attention.pattern import AttentionPattern


@eager_cache(maxsize=2)  # n x n each: keep few
def dense_mask(pattern: AttentionPattern, n: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """(mask (n, n) with empty rows opened up, empty rows (n, 1)), cached per pattern/n/device."""
    mask = pattern.mask(n, device)
    empty = ~mask.any(-1, keepdim=True)  # (n, 1)
    return mask | empty, empty


def dense_attention(q: Tensor, k: Tensor, v: Tensor, pattern: AttentionPattern, scale: float):
    mask, empty = dense_mask(pattern, q.shape[2], q.device)
    k, v, bad = nonfinite.split(k, v)  # non-finite entries reach only the rows allowed them
    # an opened-up row runs with a zero query: a NaN or inf there would reach every key's
    # gradient (its output is zeroed, but SDPA's backward multiplies by the query)
    q = q.masked_fill(empty, 0.0)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
    out = nonfinite.poison(out, nonfinite.rows_seeing(mask, bad))
    return out.masked_fill(empty, 0.0)
