"""The one-shot method contract: a layer's weight and calibration statistics in, its pruned
weight and mask out.

A method is a small class with ``name``, ``statistics`` (the :class:`InputStatistics` it
collects from the layer's inputs, or None for a data-free method) and one method::

    prune(weight, stats, target) -> (new weight or None, keep mask)

``weight`` is a float copy of the layer's weight as ``(out, in)`` rows (N:M groups run along
``in``); the mask is bool ``(out, in)``, True = kept. Returning None keeps the weights as they
are (only the mask zeroes); a method that reconstructs (SparseGPT) returns the new weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sparsetorch.patterns import NM, Pattern
from sparsetorch.post_training.statistics import InputStatistics, StatsFactory
from sparsetorch.selection import nearest_count


@dataclass(frozen=True)
class Target:
    """The mask every layer gets: unstructured at ``density``, or full N:M (``density`` None)."""

    pattern: Pattern
    density: float | None

    @property
    def nm(self) -> NM | None:
        return self.pattern if isinstance(self.pattern, NM) else None


class OneShotMethod:
    name: str = "method"
    statistics: StatsFactory | None = None  # None: data-free

    def check(self, target: Target) -> None:
        """Raise ValueError when the method cannot give ``target`` (before anything runs)."""

    def prune(
        self, weight: torch.Tensor, stats: InputStatistics | None, target: Target
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def keep_per_row(scores: torch.Tensor, density: float) -> torch.Tensor:
    """Bool mask keeping the ``density`` highest scores of every row ``(out, in)`` (to the
    nearest whole weight); ties go to the lower column."""
    k = nearest_count(density, scores.shape[1])
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices  # (out, in)
    keep = torch.zeros(scores.shape, dtype=torch.bool, device=scores.device)
    return keep.scatter_(1, order[:, :k], True)
