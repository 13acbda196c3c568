"""The one exact top-k selector: every mask in sparsetorch is chosen here.

``topk_mask(scores, k)`` keeps exactly ``k`` entries; ``global_topk_masks(scores, k)`` keeps
exactly ``k`` entries across several tensors. Both are exact and deterministic:

* the threshold is the k-th largest score (``torch.kthvalue``, a selection, not a sort, and
  never ``torch.quantile``, which refuses tensors above 16M elements);
* every score above the threshold is kept, and ties at the threshold are broken by order:
  the lower flat index wins (and, across tensors, the earlier tensor in the dict wins);
* ``NaN`` and ``+inf`` scores raise ``ValueError``; ``-inf`` is allowed and means "never
  prefer": such entries are kept only when ``k`` exceeds the number of finite scores (callers
  such as ``prune`` give already-pruned weights ``-inf`` and never ask for more than the finite
  ones).
"""

from __future__ import annotations

import math

import torch

_CHUNK = 1 << 20  # elements per chunk when looking for the r-th tie


def check_scores(scores: torch.Tensor, name: str = "scores") -> None:
    """Raise TypeError for non-real dtypes and ValueError for NaN or +inf entries."""
    if not isinstance(scores, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(scores).__name__}")
    if scores.dtype == torch.bool or scores.is_complex():
        raise TypeError(f"{name} must be a real (float or integer) tensor, got {scores.dtype}")
    if scores.is_floating_point() and bool((torch.isnan(scores) | torch.isposinf(scores)).any()):
        raise ValueError(f"{name} contain NaN or +inf; scores must be finite (or -inf)")


def nearest_count(fraction: float, total: int) -> int:
    """``fraction * total`` rounded to the nearest whole number (halves round up)."""
    return min(total, max(0, math.floor(fraction * total + 0.5)))


def _keep_first(flag: torch.Tensor, r: int) -> torch.Tensor:
    """``flag`` (1-D bool) with only its first ``r`` True entries left True."""
    out = torch.zeros_like(flag)
    if r <= 0:
        return out
    seen = 0
    for start in range(0, flag.numel(), _CHUNK):
        part = flag[start : start + _CHUNK]
        count = int(part.sum())
        if seen + count < r:
            out[start : start + _CHUNK] = part
            seen += count
            continue
        # the r-th True lies in this chunk
        positions = part.nonzero().flatten()
        last = int(positions[r - seen - 1])
        out[start : start + last + 1] = part[: last + 1]
        return out
    raise AssertionError("fewer True entries than requested")  # callers count first


def _kth_largest(flat: torch.Tensor, k: int) -> torch.Tensor:
    """The k-th largest value of a 1-D tensor (1 <= k <= numel)."""
    return torch.kthvalue(flat, flat.numel() - k + 1).values


def topk_mask(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Bool mask of ``scores``' shape with exactly ``k`` True at the highest scores.

    Ties at the threshold go to the lower flat (row-major) index. ``0 <= k <= numel``.
    """
    check_scores(scores)
    n = scores.numel()
    if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= n:
        raise ValueError(f"k must be an int in [0, {n}], got {k!r}")
    flat = scores.detach().reshape(-1)
    if k == 0:
        return torch.zeros(scores.shape, dtype=torch.bool, device=scores.device)
    if k == n:
        return torch.ones(scores.shape, dtype=torch.bool, device=scores.device)
    threshold = _kth_largest(flat, k)
    above = flat > threshold
    ties = _keep_first(flat == threshold, k - int(above.sum()))
    return (above | ties).reshape(scores.shape)


def global_topk_masks(scores: dict[str, torch.Tensor], k: int) -> dict[str, torch.Tensor]:
    """Masks keeping exactly ``k`` entries in total: the highest scores across all tensors.

    Ties at the threshold go to the earlier tensor (dict order), then the lower flat index.
    The only large temporary is one concatenated copy of the scores (for ``kthvalue``).
    """
    if not isinstance(scores, dict) or not scores:
        raise ValueError("scores must be a non-empty dict {name: tensor}")
    for name, s in scores.items():
        check_scores(s, f"scores[{name!r}]")
    n = sum(s.numel() for s in scores.values())
    if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= n:
        raise ValueError(f"k must be an int in [0, {n}], got {k!r}")
    first = next(iter(scores.values()))
    dtype = first.dtype
    for s in scores.values():
        dtype = torch.promote_types(dtype, s.dtype)
    if k == 0 or k == n:
        return {
            name: torch.full(s.shape, k == n, dtype=torch.bool, device=s.device)
            for name, s in scores.items()
        }
    device = first.device
    flat = torch.cat(
        [s.detach().reshape(-1).to(device=device, dtype=dtype) for s in scores.values()]
    )
    threshold = _kth_largest(flat, k)
    del flat
    masks: dict[str, torch.Tensor] = {}
    remaining = k
    above = {}
    for name, s in scores.items():
        above[name] = s.detach().reshape(-1).to(dtype) > threshold.to(s.device)
        remaining -= int(above[name].sum())
    for name, s in scores.items():
        ties = s.detach().reshape(-1).to(dtype) == threshold.to(s.device)
        count = int(ties.sum())
        take = min(count, remaining)
        masks[name] = (above[name] | _keep_first(ties, take)).reshape(s.shape)
        remaining -= take
    return masks


__all__ = ["check_scores", "global_topk_masks", "nearest_count", "topk_mask"]
