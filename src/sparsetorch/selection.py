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

``streaming_topk(pieces, k, ...)`` gives ``global_topk_masks``'s answer, bitwise, without
holding the scores together: each piece is a function that computes one tensor of scores
(recomputed on each of a few passes), and the k-th largest is found by a radix select on the
scores' bits (:func:`sortable_keys`), 16 bits a pass, over chunks of keys. Its extra memory is
one piece's scores plus a chunk of keys, where ``global_topk_masks`` needs a copy of all scores
and ``kthvalue``'s own value and int64 index copies (5x the scores of float32). ``st.prune``
uses it on large models.
"""

from __future__ import annotations

import math

import torch

_CHUNK = 1 << 20  # elements per chunk when looking for the r-th tie


def check_scores(scores: torch.Tensor, name: str = "scores") -> None:
    """Raise TypeError for non-real dtypes and ValueError for NaN or +inf entries (checked a
    chunk at a time: no tensor-sized temporaries)."""
    if not isinstance(scores, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(scores).__name__}")
    if scores.dtype == torch.bool or scores.is_complex():
        raise TypeError(f"{name} must be a real (float or integer) tensor, got {scores.dtype}")
    if scores.is_floating_point() and any(
        bool((torch.isnan(c) | torch.isposinf(c)).any()) for c in flat_chunks(scores)
    ):
        raise ValueError(f"{name} contain NaN or +inf; scores must be finite (or -inf)")


def flat_chunks(t: torch.Tensor, size: int = 1 << 20):
    """``t`` flattened, in consecutive pieces of at most ``size`` elements (views when ``t`` is
    contiguous). A tensor subclass (an FSDP-sharded DTensor, which cannot be flattened when its
    rows do not split evenly) is one piece, as it is."""
    if type(t) not in (torch.Tensor, torch.nn.Parameter):
        yield t
        return
    flat = t.detach().reshape(-1)
    for start in range(0, flat.numel(), size):
        yield flat[start : start + size]


def count_finite(t: torch.Tensor) -> int:
    """Finite entries of ``t``, counted a chunk at a time."""
    if not t.is_floating_point():
        return t.numel()
    return sum(int(torch.count_nonzero(torch.isfinite(c))) for c in flat_chunks(t))


def has_neginf(t: torch.Tensor) -> bool:
    return t.is_floating_point() and any(bool(torch.isneginf(c).any()) for c in flat_chunks(t))


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
        count = int(torch.count_nonzero(part))
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
    ties = _keep_first(flat == threshold, k - int(torch.count_nonzero(above)))
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
        remaining -= int(torch.count_nonzero(above[name]))
    for name, s in scores.items():
        ties = s.detach().reshape(-1).to(dtype) == threshold.to(s.device)
        count = int(torch.count_nonzero(ties))
        take = min(count, remaining)
        masks[name] = (above[name] | _keep_first(ties, take)).reshape(s.shape)
        remaining -= take
    return masks


# ------------------------------------------------------------------------- streaming top-k
_INT64_MIN = -(2**63)
_DIGIT = 16  # bits of the key decided per pass
_KEY_CHUNK = 1 << 20  # scores turned into int64 keys at a time (about 50 MB of temporaries)


def key_bytes(dtype: torch.dtype) -> int:
    """Significant bytes of :func:`sortable_keys` for scores of ``dtype`` (4 or 8)."""
    return 8 if dtype in (torch.float64, torch.int64) else 4


def sortable_keys(scores: torch.Tensor) -> torch.Tensor:
    """1-D int64 keys, one per score, ordered as the scores and equal exactly where the
    scores compare equal; within [-2**31, 2**31) when :func:`key_bytes` is 4."""
    flat = scores.detach().reshape(-1)
    if flat.dtype == torch.float64:
        bits = (flat + 0.0).view(torch.int64)  # + 0.0 turns -0.0 into +0.0
        return bits ^ ((bits >> 63) & 0x7FFF_FFFF_FFFF_FFFF)  # negative floats: reversed
    if flat.is_floating_point():  # float32, and float16/bfloat16 widened exactly
        bits = (flat.float() + 0.0).view(torch.int32)
        return (bits ^ ((bits >> 31) & 0x7FFF_FFFF)).long()
    return flat.long()


def unsigned_keys(keys: torch.Tensor, nbytes: int) -> torch.Tensor:
    """Keys shifted by 2**(8 nbytes - 1): their low ``nbytes`` bytes, read as an unsigned
    number, are in key order (a radix select walks them from the top)."""
    return keys ^ _INT64_MIN if nbytes == 8 else keys + 2**31


def _chunks(scores: torch.Tensor, dtype: torch.dtype):
    flat = scores.detach().reshape(-1)
    for start in range(0, flat.numel(), _KEY_CHUNK):
        yield start, sortable_keys(flat[start : start + _KEY_CHUNK].to(dtype))


def streaming_topk(
    pieces: list, k: int, dtype: torch.dtype, sizes: list[int] | None = None
) -> list[torch.Tensor]:
    """Masks keeping exactly ``k`` of the highest scores across ``pieces``, ties to the earlier
    piece, then the lower flat index: ``global_topk_masks`` of the computed tensors, bitwise.

    ``pieces`` are functions returning each piece's scores (checked by the caller: no NaN or
    +inf), called ``key_bytes(dtype) * 8 / 16 + 1`` times each (3 for float32 scores), one at a
    time; scores are compared in ``dtype`` (the pieces' promoted dtype). ``sizes``: their
    element counts when known (saves a call for the trivial ``k``)."""
    if sizes is None:
        sizes = [fn().numel() for fn in pieces]
    n = sum(sizes)
    if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= n:
        raise ValueError(f"k must be an int in [0, {n}], got {k!r}")
    if k in (0, n):
        out = []
        for fn in pieces:
            s = fn()
            out.append(torch.full(s.shape, k == n, dtype=torch.bool, device=s.device))
        return out
    nbytes = key_bytes(dtype)
    bits = 8 * nbytes
    prefix, remaining = 0, k  # the key's top bits chosen so far; keys still to keep among them
    for shift in range(bits - _DIGIT, -1, -_DIGIT):
        high = shift + _DIGIT
        hist = None
        for fn in pieces:
            scores = fn()
            for _, keys in _chunks(scores, dtype):
                u = unsigned_keys(keys, nbytes)
                if high < bits:  # only keys whose higher digits are the prefix's
                    u = u[((u >> high) & ((1 << (bits - high)) - 1)) == (prefix >> high)]
                count = torch.bincount((u >> shift) & ((1 << _DIGIT) - 1), minlength=1 << _DIGIT)
                hist = count if hist is None else hist + count
            del scores
        above = hist.flip(0).cumsum(0).flip(0)  # above[d]: keys with this digit >= d
        d = int((above >= remaining).nonzero().max())
        remaining -= int(above[d]) - int(hist[d])  # keys strictly above digit d are all kept
        prefix |= d << shift
    threshold = prefix - 2 ** (bits - 1)  # as a sortable key
    out = []
    for fn in pieces:  # keys above the threshold, and the first `remaining` ties in order
        scores = fn()
        mask = torch.empty(scores.numel(), dtype=torch.bool, device=scores.device)
        for start, keys in _chunks(scores, dtype):
            ties = keys == threshold
            take = min(remaining, int(torch.count_nonzero(ties)))
            mask[start : start + keys.numel()] = (keys > threshold) | _keep_first(ties, take)
            remaining -= take
        out.append(mask.reshape(scores.shape))
        del scores
    return out


__all__ = [
    "check_scores",
    "count_finite",
    "flat_chunks",
    "global_topk_masks",
    "has_neginf",
    "key_bytes",
    "nearest_count",
    "sortable_keys",
    "streaming_topk",
    "topk_mask",
    "unsigned_keys",
]
