"""Drop and grow: the topology update shared by SET and RigL, as small pure functions.

One update of a layer's mask (Evci et al. 2020, Algorithm 1; Mocanu et al. 2018)::

    n_drop   = floor(fraction * n_active)
    kept     = the (n_active - n_drop) highest drop scores among the ACTIVE connections
    grown    = the n_drop highest grow scores among the connections inactive after the drop
    new mask = kept | grown          (same nnz as before)

Selecting among the active connections only is what a naive sketch gets wrong: a top-k
over ``-(|w| * mask)`` over the whole tensor picks the pruned zeros first and drops nothing.

Grow candidates include the connections just dropped, as the official RigL implementation
does (``score_grow_lifted`` only lifts the kept ones): a connection can be dropped and grown
back in the same update; it then keeps its weight and optimizer state (it was never inactive).

With ``group`` (an integer id per element, e.g. the N:M groups), every group regrows exactly
as many connections as it lost, inside the group: the count per group is preserved, so a valid
N:M mask stays valid, whatever its density (``update_mask`` applies this for any pattern).

Counting and top-k go through a ``select`` (``sparsetorch.sharding.topk.Selector``): for
FSDP2-sharded weights ``update_mask`` works on this rank's rows and the selector counts and
ranks over all ranks' rows, so the new mask is the one the whole tensor would get, bitwise.
"""

from __future__ import annotations

import math

import torch

from sparsetorch.patterns import NM, Oriented, Pattern
from sparsetorch.patterns.nm import as_rows, from_rows
from sparsetorch.sharding.dtensor import like, local, selector_for
from sparsetorch.sharding.topk import LOCAL, Selector


def n_to_drop(n_active: int, fraction: float) -> int:
    """floor(fraction * n_active), as the official implementation casts it."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    return math.floor(fraction * n_active)


def _check(mask: torch.Tensor, *scores: torch.Tensor) -> None:
    if mask.dtype != torch.bool:
        raise TypeError(f"mask must be a bool tensor, got {mask.dtype}")
    for s in scores:
        if s.shape != mask.shape:
            raise ValueError(f"scores have shape {tuple(s.shape)}, mask has {tuple(mask.shape)}")
        if not torch.isfinite(s).all():
            raise ValueError("scores must be finite (got NaN or inf)")


def topk_per_group(scores: torch.Tensor, group: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Bool mask over a flat ``scores`` choosing the ``counts[g]`` highest scores of each group
    ``g`` (``group[i]`` is the group of element i). Ties: the lower index wins, as in
    ``sparsetorch.selection``."""
    n = scores.numel()
    if n == 0:
        return torch.zeros(0, dtype=torch.bool, device=scores.device)
    by_score = torch.sort(scores, descending=True, stable=True).indices
    by_group = torch.sort(group[by_score], stable=True).indices
    order = by_score[by_group]  # grouped; inside a group by score desc, then index asc
    g_sorted = group[order]
    sizes = torch.bincount(group, minlength=counts.numel())
    starts = torch.cumsum(sizes, 0) - sizes
    rank = torch.arange(n, device=scores.device) - starts[g_sorted]
    if (counts > sizes[: counts.numel()]).any():
        raise ValueError("a group has fewer candidates than connections to choose")
    chosen = torch.zeros(n, dtype=torch.bool, device=scores.device)
    chosen[order] = rank < counts[g_sorted]
    return chosen


def drop_lowest(
    mask: torch.Tensor, scores: torch.Tensor, n_drop: int, select: Selector = LOCAL
) -> torch.Tensor:
    """The mask after dropping the ``n_drop`` lowest-scored ACTIVE connections."""
    _check(mask, scores)
    flat = mask.reshape(-1)
    active = flat.nonzero().squeeze(1)  # (n_active,) flat indices, ascending
    n_active = select.count(flat)
    if not 0 <= n_drop <= n_active:
        raise ValueError(f"n_drop must be in [0, {n_active}] (active), got {n_drop}")
    keep = select.topk(scores.reshape(-1)[active], n_active - n_drop)
    after = torch.zeros_like(flat)
    after[active[keep]] = True
    return after.view_as(mask)


def grow_highest(
    mask: torch.Tensor,
    scores: torch.Tensor,
    n_grow: int | torch.Tensor,
    group: torch.Tensor | None = None,
    select: Selector = LOCAL,
) -> torch.Tensor:
    """Bool tensor of the connections to grow: the highest ``scores`` among the INACTIVE ones.

    ``n_grow`` is an int, or with ``group`` (an int64 group id per element) a tensor of counts
    per group id."""
    _check(mask, scores)
    flat = mask.reshape(-1)
    candidates = (~flat).nonzero().squeeze(1)  # (n_inactive,)
    cand_scores = scores.reshape(-1)[candidates]
    if group is None:
        n_inactive = select.count(~flat)
        if not 0 <= int(n_grow) <= n_inactive:
            raise ValueError(f"n_grow must be in [0, {n_inactive}] (inactive), got {n_grow}")
        chosen = select.topk(cand_scores, int(n_grow))
    else:
        chosen = topk_per_group(cand_scores, group.reshape(-1)[candidates], n_grow)
    grown = torch.zeros_like(flat)
    grown[candidates[chosen]] = True
    return grown.view_as(mask)


def drop_grow(
    mask: torch.Tensor,
    drop_scores: torch.Tensor,
    grow_scores: torch.Tensor,
    fraction: float,
    group: torch.Tensor | None = None,
    select: Selector = LOCAL,
) -> torch.Tensor:
    """One topology update of one layer: the new mask, with exactly the nnz of ``mask`` (and,
    with ``group``, exactly the nnz of every group)."""
    _check(mask, drop_scores, grow_scores)
    n_drop = n_to_drop(select.count(mask), fraction)
    kept = drop_lowest(mask, drop_scores, n_drop, select)
    if group is None:
        return kept | grow_highest(kept, grow_scores, n_drop, select=select)
    group = group.to(mask.device)
    if group.shape != mask.shape:
        raise ValueError(f"group has shape {tuple(group.shape)}, mask has {tuple(mask.shape)}")
    n_groups = int(group.max()) + 1 if group.numel() else 0
    lost = torch.bincount(group[mask & ~kept], minlength=n_groups)  # dropped per group
    return kept | grow_highest(kept, grow_scores, lost, group=group)


def _nm(pattern: Pattern) -> NM | None:
    """The N:M pattern behind ``pattern`` (itself, or the base of ``pattern.along(...)``)."""
    base = pattern.base if isinstance(pattern, Oriented) else pattern
    return base if isinstance(base, NM) else None


def nm_group_ids(pattern: Pattern, shape: torch.Size | tuple[int, ...]) -> torch.Tensor:
    """The N:M group of every element of a weight of ``shape`` (int64, same shape), in the
    pattern's own layout (``sparsetorch.patterns.nm.as_rows``: groups of M along the input
    dim, the weight's reduction axis for ``pattern.along(in_dim)``; a trailing partial group
    is a group of its own)."""
    nm = _nm(pattern)
    canonical = pattern.canonical_shape(shape)
    rows, cols = as_rows(torch.empty(canonical, device="meta")).shape
    per_row = -(-cols // nm.m)
    ids = torch.arange(rows).unsqueeze(1) * per_row + torch.arange(cols) // nm.m  # (R, C)
    return pattern.from_canonical(from_rows(ids, canonical)).contiguous()


def update_mask(
    pattern: Pattern,
    mask: torch.Tensor,
    drop_scores: torch.Tensor,
    grow_scores: torch.Tensor,
    fraction: float,
) -> torch.Tensor:
    """One drop/grow update of a weight's mask under ``pattern`` (all tensors of the weight's
    shape). Units are what the pattern keeps or prunes whole: single weights (unstructured,
    N:M: then every group keeps its count), H x W blocks, output channels (their scores are
    the pattern's unit scores: sums over the unit). ``fraction`` counts units. FSDP2-sharded
    (DTensor) arguments give the sharded new mask (see the module docstring)."""
    ref, select = mask, selector_for(mask, pattern=pattern)
    mask, drop_scores, grow_scores = (local(t, like=ref) for t in (mask, drop_scores, grow_scores))
    return like(_update_local(pattern, mask, drop_scores, grow_scores, fraction, select), ref)


def _update_local(
    pattern: Pattern,
    mask: torch.Tensor,
    drop_scores: torch.Tensor,
    grow_scores: torch.Tensor,
    fraction: float,
    select: Selector,
) -> torch.Tensor:
    if not pattern.is_valid(mask):
        raise ValueError(f"mask is not a valid {pattern.name} mask")
    if _nm(pattern) is not None:
        group = nm_group_ids(pattern, mask.shape).to(mask.device)
        return drop_grow(mask, drop_scores, grow_scores, fraction, group=group)
    unit_mask = pattern.unit_scores(mask.float()) > 0
    new_units = drop_grow(
        unit_mask,
        pattern.unit_scores(drop_scores),
        pattern.unit_scores(grow_scores),
        fraction,
        select=select,
    )
    return pattern.expand(new_units, mask.shape)
