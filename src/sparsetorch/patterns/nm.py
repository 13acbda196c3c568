"""N:M sparsity: at most N kept weights in every group of M consecutive weights along the
reduction (input) dimension, the layout sparse tensor cores accelerate (2:4 on NVIDIA Ampere+).

Groups (as NVIDIA ASP): a weight is seen as rows of input channels, ``(rows, in)`` with the
input-channel dim (dim 1) last (``sparsetorch.formats.nm.as_rows``); for Linear that is the
weight itself, for a conv ``(out, in, kh, kw)`` it is ``(out*kh*kw, in)``, i.e. groups of M input
channels at each kernel position, the reduction order of an NHWC implicit GEMM. A 1-D weight is
one row.

Rows whose length is not a multiple of M end with a partial group of L < M weights; it may keep
``ceil(N*L/M)`` (<= N, so zero-padding the row to a multiple of M gives a valid N:M row for
hardware, and the density stays as close to N/M as whole weights allow).

The full mask (``density=None``) keeps exactly N per group; a lower density keeps the best
weights among those, so ``sparsity=0.9`` with ``"2:4"`` is 90% sparse and still 2:4-valid.
Validity is ``sparsetorch.formats.nm.is_nm``, the one N:M check of the package.
"""

from __future__ import annotations

import math

import torch

from sparsetorch.formats.nm import as_rows, from_rows, group_counts, is_nm
from sparsetorch.patterns.base import Pattern, check_mask, float_scores

__all__ = ["NM", "as_rows", "from_rows"]

_ROW_BLOCK = 1 << 20  # elements ranked at a time


def _top_in_groups(groups: torch.Tensor, n: int) -> torch.Tensor:
    """Bool mask of the n highest entries along the last dim; ties go to the lower index."""
    order = torch.sort(groups, dim=-1, descending=True, stable=True).indices
    keep = torch.zeros(groups.shape, dtype=torch.bool, device=groups.device)
    return keep.scatter_(-1, order[..., :n], True)


class NM(Pattern):
    def __init__(self, n: int, m: int) -> None:
        if not (isinstance(n, int) and isinstance(m, int)) or not 0 < n <= m:
            raise ValueError(f"N:M pattern needs integers 0 < N <= M, got {n}:{m}")
        self.n, self.m = n, m
        self.name = f"{n}:{m}"
        self.fixed_density = n / m

    def partial_keep(self, length: int) -> int:
        """How many weights a partial group of ``length`` (< M) weights may keep."""
        return math.ceil(self.n * length / self.m)

    def indivisible(self, shape: torch.Size | tuple[int, ...]) -> str | None:
        cols = _rows_cols(shape)[1] if len(shape) else 0
        if cols % self.m:
            return (
                f"its rows along the input dim hold {cols} weights, not a multiple of M={self.m} "
                f"(shape {tuple(shape)})"
            )
        return None

    def max_units(self, shape: torch.Size | tuple[int, ...]) -> int:
        rows, cols = _rows_cols(shape)
        full, rest = divmod(cols, self.m)
        return rows * (full * self.n + self.partial_keep(rest))

    def candidates(self, scores: torch.Tensor) -> torch.Tensor:
        """Bool mask of the full N:M mask: the top N of every group (top ceil(N*L/M) of a
        partial group of L). Rows are ranked a block at a time (groups never straddle rows),
        so the sort's int64 indices never span a whole large weight."""
        rows = as_rows(scores)  # (R, C)
        r, c = rows.shape
        full = c // self.m * self.m
        keep = torch.zeros(rows.shape, dtype=torch.bool, device=scores.device)
        step = max(1, _ROW_BLOCK // max(c, 1))
        for start in range(0, r, step):
            block = rows[start : start + step]
            if full:
                groups = block[:, :full].reshape(block.shape[0], -1, self.m)  # (B, C/M, M)
                top = _top_in_groups(groups, self.n).reshape(block.shape[0], full)
                keep[start : start + step, :full] = top
            if full < c:
                top = _top_in_groups(block[:, full:], self.partial_keep(c - full))
                keep[start : start + step, full:] = top
        return from_rows(keep, scores.shape)

    def unit_scores(self, scores: torch.Tensor) -> torch.Tensor:
        scores = float_scores(scores)
        return scores.masked_fill(~self.candidates(scores), float("-inf"))

    def expand(self, unit_mask: torch.Tensor, shape: torch.Size | tuple[int, ...]) -> torch.Tensor:
        return unit_mask.reshape(shape)

    def group_counts(self, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Kept weights per full group ``(R, C/M)`` and per partial group ``(R,)`` or None."""
        return group_counts(as_rows(mask), self.m)

    def is_valid(self, mask: torch.Tensor) -> bool:
        check_mask(mask)
        if mask.dim() == 0:
            return False
        rest = _rows_cols(mask.shape)[1] % self.m
        return is_nm(as_rows(mask), self.n, self.m, partial_n=self.partial_keep(rest))

    def fill(self, mask: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """Grow within groups: add to every group its highest-scoring pruned weights until it
        holds N again (``ceil(N*L/M)`` for a partial group). For N:M-constrained drop-and-grow
        (RigL/SET): drop anywhere, then ``fill`` each group back from the gradient scores."""
        check_mask(mask)
        if mask.shape != scores.shape:
            raise ValueError(f"mask {tuple(mask.shape)} and scores {tuple(scores.shape)} differ")
        if not self.is_valid(mask):
            raise ValueError(f"mask is not a valid {self.name} mask")
        scores = float_scores(scores)
        # kept weights first (+inf), then pruned ones by score; the top N of each group is
        # then the old kept weights plus the best pruned ones
        ranked = scores.masked_fill(mask, float("inf"))
        return self.candidates(ranked) | mask


def _rows_cols(shape: torch.Size | tuple[int, ...]) -> tuple[int, int]:
    if len(shape) == 1:
        return 1, int(shape[0])
    cols = int(shape[1])
    rows = 1
    for i, d in enumerate(shape):
        if i != 1:
            rows *= int(d)
    return rows, cols
