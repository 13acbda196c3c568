"""The order in which training examples are seen: a pure function of (data seed, epoch).

Epoch ``e`` visits ``randperm(n)`` drawn from a ``torch.Generator`` seeded with
``data_seed * 1_000_003 + e``, in batches of ``batch_size`` (the last batch of an epoch may be
smaller). Any step's batch can be recomputed without replaying earlier ones: a resumed run and
every IMP round see exactly the same data order.
"""

from __future__ import annotations

import math

import torch


def steps_per_epoch(n: int, batch_size: int) -> int:
    return math.ceil(n / batch_size)


def epoch_order(n: int, data_seed: int, epoch: int) -> torch.Tensor:
    """A permutation of ``range(n)``: the example order of ``epoch``."""
    generator = torch.Generator().manual_seed(data_seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=generator)


def batch_indices(order: torch.Tensor, position: int, batch_size: int) -> torch.Tensor:
    """The example indices of batch ``position`` of an epoch."""
    return order[position * batch_size : (position + 1) * batch_size]
