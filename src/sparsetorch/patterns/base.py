"""The pattern contract: a shape constraint that turns scores into the best valid mask.

A pattern selects *units* (single weights, blocks, whole channels): it reduces a weight's
scores to one score per unit (``unit_scores``), the selector keeps the best ``k`` units, and
``expand`` maps the kept units back to a mask of the weight's shape. ``prune`` uses the same
three steps across layers for the "global" distribution. A unit score of ``-inf`` means the
unit cannot be kept (already pruned, or excluded by the pattern).
"""

from __future__ import annotations

import torch

from sparsetorch._checks import is_real
from sparsetorch.selection import check_scores, nearest_count, topk_mask


def float_scores(scores: torch.Tensor) -> torch.Tensor:
    """Scores as float32 (float64 stays float64), so that sums neither overflow nor round."""
    check_scores(scores)
    scores = scores.detach()
    return scores if scores.dtype == torch.float64 else scores.float()


class Pattern:
    """Base class; subclasses implement ``unit_scores``, ``expand`` and ``is_valid``."""

    name: str = "pattern"
    # density of the pattern's full mask (N/M for N:M); None when any density is allowed
    fixed_density: float | None = None

    def check(self, shape: torch.Size | tuple[int, ...]) -> None:
        """Raise ValueError when the pattern cannot apply to a weight of this shape."""
        if len(shape) == 0:
            raise ValueError(f"pattern {self.name!r} needs a weight with at least 1 dim")

    def unit_size(self, shape: torch.Size | tuple[int, ...]) -> int:
        """Weights per unit."""
        return 1

    def num_units(self, shape: torch.Size | tuple[int, ...]) -> int:
        """Units of a weight of this shape."""
        return _numel(shape) // self.unit_size(shape)

    def max_units(self, shape: torch.Size | tuple[int, ...]) -> int:
        """The most units a valid mask keeps."""
        return self.num_units(shape)

    def max_density(self, shape: torch.Size | tuple[int, ...]) -> float:
        return self.max_units(shape) * self.unit_size(shape) / _numel(shape)

    def unit_scores(self, scores: torch.Tensor) -> torch.Tensor:
        """One score per unit (float; ``-inf`` = cannot be kept)."""
        raise NotImplementedError

    def expand(self, unit_mask: torch.Tensor, shape: torch.Size | tuple[int, ...]) -> torch.Tensor:
        """A bool mask of ``shape`` from a bool mask over the units."""
        raise NotImplementedError

    def is_valid(self, mask: torch.Tensor) -> bool:
        """Whether ``mask`` (bool) obeys the pattern."""
        raise NotImplementedError

    def units_for(self, shape: torch.Size | tuple[int, ...], density: float | None) -> int:
        """How many units to keep for ``density`` (None: the pattern's full mask)."""
        self.check(shape)
        if density is None:
            if self.fixed_density is None:
                raise ValueError(f"pattern {self.name!r} has no fixed density; pass a density")
            return self.max_units(shape)
        if not is_real(density):
            raise TypeError(f"density must be a float in [0, 1], got {density!r}")
        if not 0.0 <= density <= 1.0:
            raise ValueError(f"density must be in [0, 1], got {density}")
        density = float(density)
        k = nearest_count(density, self.num_units(shape))
        if k > self.max_units(shape):
            raise ValueError(
                f"density {density} is above what pattern {self.name!r} allows for a weight "
                f"of shape {tuple(shape)} (at most {self.max_density(shape):.4g})"
            )
        return k

    def mask(self, scores: torch.Tensor, density: float | None = None) -> torch.Tensor:
        """The valid mask with the highest total score keeping ``density`` of the weights
        (to the nearest whole unit). ``density=None`` gives the full mask of a fixed-density
        pattern (exactly N per group for N:M)."""
        k = self.units_for(scores.shape, density)
        return self.expand(topk_mask(self.unit_scores(scores), k), scores.shape)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.name == self.name

    def __hash__(self) -> int:
        return hash((type(self), self.name))


def _numel(shape: torch.Size | tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def check_mask(mask: torch.Tensor) -> None:
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
        raise TypeError(f"mask must be a bool tensor, got {getattr(mask, 'dtype', type(mask))}")
