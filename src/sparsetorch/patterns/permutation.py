"""Input-channel permutation for N:M sparsity, as NVIDIA ASP does (Pool & Yu 2021, "Channel
Permutations for N:M Sparsity", NeurIPS).

An N:M mask keeps the N largest of every M consecutive input channels. Which channels share a
group is arbitrary: reordering the consumer's input channels (and, to keep the function, the
producer's output channels) changes what the mask can keep. :func:`search_permutation` looks
for an order with more kept magnitude by greedy channel swaps; :func:`permute_channels_`
applies an order to a producer/consumer pair so the network computes the same function.

The swap search. With ``a >= b`` the N-th largest of the other M-1 weights of a group row, the
group keeps ``top_N(others) + relu(x - b)`` when channel x joins it. So the kept magnitude after
swapping channels at positions p and q is, summed over rows, a few ``relu`` terms: the gain of
every swap is one ``(C, C)`` matrix, and after a swap only the rows of the two touched groups
and the two moved columns change. The search applies the best swap until none gains.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from sparsetorch.masking import SUFFIX
from sparsetorch.patterns import NM, get
from sparsetorch.patterns.nm import as_rows


def _nm(pattern: str | NM) -> NM:
    p = get(pattern)
    if not isinstance(p, NM):
        raise ValueError(f"channel permutation needs an N:M pattern, got {p.name!r}")
    return p


def kept_magnitude(weight: torch.Tensor, pattern: str | NM = "2:4") -> float:
    """Sum of |w| kept by the full N:M mask of ``weight``."""
    p = _nm(pattern)
    w = weight.detach().abs().double()
    return float(w[p.mask(w)].sum())


def _group_stats(x: torch.Tensor, n: int, m: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For every position p (a column of ``x`` (R, C'), C' a multiple of M): ``base`` (C',),
    the kept magnitude of the other M-1 members of p's group, and ``bar`` (R, C'), their N-th
    largest per row (what a newcomer in p's place must beat)."""
    r, c = x.shape
    groups = x.reshape(r, c // m, m)  # (R, G, M)
    idx = torch.tensor([[k for k in range(m) if k != j] for j in range(m)], device=x.device)
    others = groups[:, :, idx]  # (R, G, M, M-1): the group without member j
    if n == m:  # everything is kept: no newcomer ever gains
        bar = torch.full(others.shape[:-1], float("inf"), dtype=x.dtype, device=x.device)
        return others.sum(-1).sum(0).reshape(c), bar.reshape(r, c)
    top = torch.topk(others, n, dim=-1).values  # (R, G, M, N)
    return top.sum(-1).sum(0).reshape(c), top[..., -1].reshape(r, c)


def _values(
    x: torch.Tensor, base: torch.Tensor, bar: torch.Tensor, rows: torch.Tensor
) -> torch.Tensor:
    """``V[p, q]`` for p in ``rows``, every q: the kept magnitude of p's group with the column
    now at position q in p's place."""
    out = []
    chunk = max(1, (1 << 24) // max(1, x.numel()))  # bound the (R, P, C) temporary
    for start in range(0, rows.numel(), chunk):
        ps = rows[start : start + chunk]
        gain = torch.relu(x.unsqueeze(1) - bar[:, ps].unsqueeze(2)).sum(0)  # (P, C)
        out.append(base[ps].unsqueeze(1) + gain)
    return torch.cat(out)


def _members(position: int, m: int) -> torch.Tensor:
    start = position // m * m
    return torch.arange(start, start + m)


def search_permutation(
    weight: torch.Tensor, pattern: str | NM = "2:4", max_swaps: int | None = None
) -> torch.Tensor:
    """An order of ``weight``'s input channels (dim 1) under which the N:M mask keeps at least
    as much magnitude as in the original order, found by greedy best-improvement swaps (at most
    ``max_swaps``, default ``4 * in``).

    Returns ``perm`` (long, a permutation of ``range(in)``): use ``weight[:, perm]``. The number
    of input channels must be a multiple of M. Deterministic (ties: lowest positions).
    """
    p = _nm(pattern)
    if weight.dim() < 2:
        raise ValueError(f"weight must have an input dim (dim 1), got shape {tuple(weight.shape)}")
    c = weight.shape[1]
    if c % p.m:
        raise ValueError(f"input channels ({c}) must be a multiple of M={p.m}")
    if max_swaps is None:
        max_swaps = 4 * c
    x = as_rows(weight.detach().abs().double()).clone()  # (R, C), channels last
    perm = torch.arange(c)
    group = torch.arange(c) // p.m
    same = group.unsqueeze(0) == group.unsqueeze(1)  # swaps within a group change nothing
    base, bar = _group_stats(x, p.n, p.m)
    values = _values(x, base, bar, torch.arange(c))  # (C, C)
    tol = 1e-12 * max(1.0, float(x.sum()))
    for _ in range(max_swaps):
        kept = base + torch.relu(x - bar).sum(0)  # (C,): kept of each position's group
        delta = values - kept.unsqueeze(1)
        gain = (delta + delta.T).masked_fill(same, float("-inf"))
        best = int(torch.argmax(gain))
        if float(gain.view(-1)[best]) <= tol:
            break
        i, j = divmod(best, c)
        x[:, [i, j]] = x[:, [j, i]]
        perm[[i, j]] = perm[[j, i]]
        # only the two touched groups' stats, their rows of V and the moved columns change
        touched = torch.cat([_members(i, p.m), _members(j, p.m)])
        base[touched], bar[:, touched] = _group_stats(x[:, touched], p.n, p.m)
        values[touched] = _values(x, base, bar, touched)
        moved = torch.tensor([i, j])
        values[:, moved] = base.unsqueeze(1) + torch.relu(
            x[:, moved].unsqueeze(1) - bar.unsqueeze(2)
        ).sum(0)
    return perm


def _check_perm(perm: torch.Tensor, channels: int) -> torch.Tensor:
    perm = torch.as_tensor(perm, dtype=torch.long)
    if perm.shape != (channels,) or not torch.equal(perm.sort().values, torch.arange(channels)):
        raise ValueError(f"perm must be a permutation of range({channels})")
    return perm


@torch.no_grad()
def _reorder_(tensor: torch.Tensor, perm: torch.Tensor, dim: int) -> None:
    tensor.copy_(tensor.index_select(dim, perm.to(tensor.device)))  # in place: same Parameter


def permute_channels_(
    producer: nn.Module,
    consumer: nn.Module,
    perm: torch.Tensor,
    between: Sequence[nn.Module] = (),
) -> None:
    """Reorder the channels flowing from ``producer`` to ``consumer``, in place, so that the
    network computes the same function: the producer's output channels (weight dim 0, bias and
    their masks), every per-channel parameter and buffer of the ``between`` modules (BatchNorm
    weight, bias, running statistics) and the consumer's input channels (weight dim 1 and its
    mask) all take the order ``perm`` (from :func:`search_permutation` on the consumer weight).

    Holds when everything between the two is elementwise (ReLU, dropout), per-channel
    (BatchNorm) or symmetric in the channels (LayerNorm over exactly the channels). Permute before building the optimizer: its state is not reordered.
    """
    weight = consumer._parameters.get("weight")
    if weight is None or weight.dim() < 2:
        raise ValueError("consumer must have a weight with an input dim (Linear or Conv)")
    if getattr(consumer, "groups", 1) != 1 or getattr(producer, "groups", 1) != 1:
        raise ValueError("grouped convolutions are not supported")
    out = producer._parameters.get("weight")
    if out is None or out.shape[0] != weight.shape[1]:
        raise ValueError(
            f"producer output channels ({None if out is None else out.shape[0]}) must equal "
            f"consumer input channels ({weight.shape[1]})"
        )
    for m in between:
        if isinstance(m, nn.GroupNorm) or (
            isinstance(m, nn.LayerNorm) and tuple(m.normalized_shape) != (weight.shape[1],)
        ):
            raise ValueError(
                f"{type(m).__name__} between producer and consumer mixes channels in a way a "
                "permutation changes; only BatchNorm and LayerNorm over the channels may be between"
            )
    perm = _check_perm(perm, weight.shape[1])
    for module in between:
        for tensor in [*module.parameters(recurse=False), *module.buffers(recurse=False)]:
            if tensor.dim() >= 1 and tensor.shape[0] == len(perm):
                _reorder_(tensor, perm, 0)
    for name in ("weight", "bias", "weight" + SUFFIX, "bias" + SUFFIX):
        tensor = getattr(producer, name, None)
        if isinstance(tensor, torch.Tensor):
            _reorder_(tensor, perm, 0)
    for name in ("weight", "weight" + SUFFIX):
        tensor = getattr(consumer, name, None)
        if isinstance(tensor, torch.Tensor):
            _reorder_(tensor, perm, 1)


__all__ = ["kept_magnitude", "permute_channels_", "search_permutation"]
