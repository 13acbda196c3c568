"""``sparse_attention(q, k, v, pattern)``: softmax attention restricted to a pattern."""

from __future__ import annotations

import math

from torch import Tensor

from sparsetorch._checks import is_real
from sparsetorch.attention.backends import BACKENDS
from sparsetorch.attention.parse import parse
from sparsetorch.attention.pattern import AttentionPattern


def check_qkv(q: Tensor, k: Tensor, v: Tensor) -> None:
    """One clear error for inputs the backends cannot take."""
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{name} must be a tensor, got {type(t).__name__}")
        if t.dim() != 4:
            raise ValueError(f"{name} must have shape (B, H, n, D), got {tuple(t.shape)}")
        if not t.is_floating_point():
            raise TypeError(f"{name} must be a floating point tensor, got {t.dtype}")
    heads_ok = k.shape[1] >= 1 and q.shape[1] % k.shape[1] == 0
    same = (k.shape[0], k.shape[2:]) == (q.shape[0], q.shape[2:]) and v.shape[:3] == k.shape[:3]
    if not (heads_ok and same):
        raise ValueError(
            f"q and k must have the same shape (B, H, n, D) and v the same (B, H, n), except "
            f"that k and v may have fewer heads, a divisor of q's (grouped-query attention); "
            f"got q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}"
        )
    if not q.dtype == k.dtype == v.dtype:
        raise TypeError(f"q, k, v must share one dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if not q.device == k.device == v.device:
        raise ValueError(f"q, k, v must be on one device, got {q.device}, {k.device}, {v.device}")


def check_scale(scale: object) -> float:
    """``scale`` as a float: any finite real number (numpy scalars too), never a bool."""
    if not is_real(scale):
        raise TypeError(f"scale must be a finite number (or None: 1/sqrt(D)), got {scale!r}")
    if not math.isfinite(scale):
        raise ValueError(f"scale must be a finite number (or None: 1/sqrt(D)), got {scale}")
    return float(scale)


def sparse_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    pattern: AttentionPattern | str,
    backend: str = "auto",
    scale: float | None = None,
) -> Tensor:
    """``softmax(q kᵀ · scale, restricted to pattern) v`` with q, k, v of shape (B, H, n, D);
    k and v may have H / group heads (grouped-query attention: query head h reads key head
    h // group).

    ``pattern``: an :class:`AttentionPattern` or its string (``"local(64) | global_tokens([0])"``).
    ``backend``: "reference", "flex", "band", "bands", "dense" or "auto" (see :mod:`.backends`).
    ``scale`` defaults to 1/sqrt(D). A query with no allowed key gets a zero output row; a
    query allowed to attend a position whose key or value is NaN or ±inf gets a NaN row, and
    no other query sees that position (on every backend).
    Returns (B, H, n, Dv).
    """
    check_qkv(q, k, v)
    pattern = parse(pattern)
    pattern._validate(q.shape[2])
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else check_scale(scale)
    return BACKENDS.build(backend)(q, k, v, pattern, scale)


__all__ = ["check_qkv", "sparse_attention"]
