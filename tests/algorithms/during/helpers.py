"""Shared by the during-training tests: a naive reference of drop/grow, a tiny model, a loop."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn


def naive_drop_grow(mask, drop_scores, grow_scores, fraction, group=None):
    """The paper's update written as plain python sorts; ties: lower flat index first."""
    m = mask.flatten().tolist()
    d = drop_scores.flatten().tolist()
    g = grow_scores.flatten().tolist()
    gid = group.flatten().tolist() if group is not None else [0] * len(m)
    active = [i for i, a in enumerate(m) if a]
    n_drop = math.floor(fraction * len(active))
    by_magnitude = sorted(active, key=lambda i: (-d[i], i))  # best first
    kept = set(by_magnitude[: len(active) - n_drop])
    dropped = set(active) - kept
    grown = set()
    for k in set(gid):
        lost = n_drop if group is None else sum(1 for i in dropped if gid[i] == k)
        cand = sorted(
            (i for i in range(len(m)) if gid[i] == k and i not in kept),
            key=lambda i: (-g[i], i),
        )
        grown |= set(cand[:lost])
    new = torch.zeros(len(m), dtype=torch.bool)
    new[sorted(kept | grown)] = True
    return new.view_as(mask)


def tiny_mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 4))


def batch(seed: int = 0, n: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 12, generator=gen), torch.randint(0, 4, (n,), generator=gen)


def make_optimizer(kind: str, model: nn.Module) -> torch.optim.Optimizer:
    if kind == "momentum":
        return torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    if kind == "adam":
        return torch.optim.Adam(model.parameters(), lr=1e-2)
    if kind == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    raise ValueError(kind)


def train(
    algo,
    steps: int,
    before_step: Callable[[int], None] | None = None,
    after_step: Callable[[int], None] | None = None,
) -> None:
    """``steps`` iterations of a user loop; each batch depends on the step."""
    model, optimizer = algo.model, algo.optimizer
    for _ in range(steps):
        t = algo.t
        x, y = batch(t)
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        if before_step is not None:
            before_step(t)
        algo.step()
        if after_step is not None:
            after_step(t)


def weights(algo) -> dict[str, torch.Tensor]:
    return {full: m._parameters[n].detach().clone() for full, m, n in algo.targets}


def grads(algo) -> dict[str, torch.Tensor]:
    return {full: m._parameters[n].grad.detach().clone() for full, m, n in algo.targets}


def fill_state(algo, value: float = 1.0) -> None:
    """Set every per-weight optimizer state tensor to ``value`` (stale moments everywhere),
    so that only the algorithm's own zeroing can make them zero at grown positions."""
    for _, m, n in algo.targets:
        for v in algo.optimizer.state.get(m._parameters[n], {}).values():
            if isinstance(v, torch.Tensor) and v.shape == m._parameters[n].shape:
                v.fill_(value)


def state_tensors(algo, full: str) -> list[torch.Tensor]:
    (module, name) = next((m, n) for f, m, n in algo.targets if f == full)
    param = module._parameters[name]
    return [
        v
        for v in algo.optimizer.state.get(param, {}).values()
        if isinstance(v, torch.Tensor) and v.shape == param.shape
    ]
