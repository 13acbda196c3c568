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
    """Base class; subclasses implement ``unit_scores``, ``expand`` and ``is_valid`` for a
    weight laid out ``(out, in, *rest)``: its reduction (input) axis is dim 1. A weight whose
    reduction axis is another one (transformers' ``Conv1D`` stores ``(in, out)``) takes
    ``pattern.along(in_dim)``, which moves that axis to dim 1 for every method."""

    name: str = "pattern"
    # density of the pattern's full mask (N/M for N:M); None when any density is allowed
    fixed_density: float | None = None
    in_dim: int = 1  # the reduction axis of the weights this pattern is applied to

    def along(self, in_dim: int) -> Pattern:
        """This pattern for weights whose reduction (input) axis is ``in_dim``: N:M groups run
        along it, blocks and channels see it as the columns (``masking.in_dim_of`` gives a
        parameter's axis). ``along(1)`` is the pattern itself."""
        if isinstance(in_dim, bool) or not isinstance(in_dim, int) or in_dim < 0:
            raise ValueError(f"in_dim must be an int >= 0, got {in_dim!r}")
        return self if in_dim == 1 else Oriented(self, in_dim)

    def check(self, shape: torch.Size | tuple[int, ...]) -> None:
        """Raise ValueError when the pattern cannot apply to a weight of this shape."""
        if len(shape) == 0:
            raise ValueError(f"pattern {self.name!r} needs a weight with at least 1 dim")

    def canonical_shape(self, shape: torch.Size | tuple[int, ...]) -> tuple[int, ...]:
        """The shape the pattern works on: the weight's with its reduction axis at dim 1."""
        return tuple(shape)

    def to_canonical(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` (a weight, mask or scores) with its reduction axis at dim 1 (a view)."""
        return t

    def from_canonical(self, t: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`to_canonical` (a view)."""
        return t

    def indivisible(self, shape: torch.Size | tuple[int, ...]) -> str | None:
        """Why the pattern does not tile a weight of this shape exactly (a block size that does
        not divide it, rows that are not a multiple of M), or None when it does. ``st.prune``
        keeps such layers dense, or refuses them, by its ``indivisible`` option."""
        return None

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


def _moved(shape: torch.Size | tuple[int, ...], src: int, dst: int) -> tuple[int, ...]:
    dims = list(shape)
    dims.insert(dst, dims.pop(src))
    return tuple(dims)


class Oriented(Pattern):
    """``base`` applied to weights whose reduction axis is ``in_dim`` (not 1): every method sees
    the weight with that axis moved to dim 1 (``movedim(in_dim, 1)``, a view) and maps masks
    back. Weights of fewer dims than that are one row, as for ``base``. Built by
    ``base.along(in_dim)``; it keeps ``base``'s name and fixed density."""

    def __init__(self, base: Pattern, in_dim: int) -> None:
        self.base, self.in_dim = base, in_dim
        self.name, self.fixed_density = base.name, base.fixed_density

    def along(self, in_dim: int) -> Pattern:
        return self.base.along(in_dim)

    def _moves(self, ndim: int) -> bool:
        return ndim >= 2 and self.in_dim < ndim

    def canonical_shape(self, shape: torch.Size | tuple[int, ...]) -> tuple[int, ...]:
        return _moved(shape, self.in_dim, 1) if self._moves(len(shape)) else tuple(shape)

    def to_canonical(self, t: torch.Tensor) -> torch.Tensor:
        return t.movedim(self.in_dim, 1) if self._moves(t.dim()) else t

    def from_canonical(self, t: torch.Tensor) -> torch.Tensor:
        return t.movedim(1, self.in_dim) if self._moves(t.dim()) else t

    def check(self, shape: torch.Size | tuple[int, ...]) -> None:
        self.base.check(self.canonical_shape(shape))

    def indivisible(self, shape: torch.Size | tuple[int, ...]) -> str | None:
        return self.base.indivisible(self.canonical_shape(shape))

    def unit_size(self, shape: torch.Size | tuple[int, ...]) -> int:
        return self.base.unit_size(self.canonical_shape(shape))

    def num_units(self, shape: torch.Size | tuple[int, ...]) -> int:
        return self.base.num_units(self.canonical_shape(shape))

    def max_units(self, shape: torch.Size | tuple[int, ...]) -> int:
        return self.base.max_units(self.canonical_shape(shape))

    def unit_scores(self, scores: torch.Tensor) -> torch.Tensor:
        return self.base.unit_scores(self.to_canonical(scores))

    def expand(self, unit_mask: torch.Tensor, shape: torch.Size | tuple[int, ...]) -> torch.Tensor:
        return self.from_canonical(self.base.expand(unit_mask, self.canonical_shape(shape)))

    def is_valid(self, mask: torch.Tensor) -> bool:
        return self.base.is_valid(self.to_canonical(mask))

    def __repr__(self) -> str:
        return f"{self.base!r}.along({self.in_dim})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Oriented) and (other.base, other.in_dim) == (
            self.base,
            self.in_dim,
        )

    def __hash__(self) -> int:
        return hash((Oriented, self.base, self.in_dim))
