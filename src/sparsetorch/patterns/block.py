"""Block sparsity: the weight, seen as a matrix ``(out, in*k...)`` (``reshape(out, -1)``, the
layout of block-sparse (BSR) kernels), is tiled into H x W blocks that are kept or pruned whole.
A block's score is the sum of its weights' scores. H must divide ``out`` and W the columns."""

from __future__ import annotations

import torch

from sparsetorch.patterns.base import Pattern, check_mask, float_scores


def as_matrix_shape(shape: torch.Size | tuple[int, ...]) -> tuple[int, int]:
    """``(out, rest)``: the matrix view ``reshape(out, -1)`` of a weight (1-D: one row)."""
    if len(shape) == 1:
        return 1, int(shape[0])
    cols = 1
    for d in shape[1:]:
        cols *= int(d)
    return int(shape[0]), cols


def sum_finite(x: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    """Sum over ``dims`` ignoring ``-inf`` entries; ``-inf`` where every entry is ``-inf``."""
    finite = torch.isfinite(x)
    total = torch.where(finite, x, torch.zeros((), dtype=x.dtype, device=x.device)).sum(dims)
    return total.masked_fill(finite.sum(dims) == 0, float("-inf"))


class Block(Pattern):
    def __init__(self, h: int, w: int) -> None:
        if not (isinstance(h, int) and isinstance(w, int)) or h <= 0 or w <= 0:
            raise ValueError(f"block pattern needs positive integers HxW, got {h}x{w}")
        self.h, self.w = h, w
        self.name = f"block{h}x{w}"

    def check(self, shape: torch.Size | tuple[int, ...]) -> None:
        super().check(shape)
        reason = self.indivisible(shape)
        if reason is not None:
            raise ValueError(reason)

    def indivisible(self, shape: torch.Size | tuple[int, ...]) -> str | None:
        rows, cols = as_matrix_shape(shape)
        if rows % self.h or cols % self.w:
            return (
                f"block size {self.h}x{self.w} does not divide the weight of shape "
                f"{tuple(shape)} (seen as a {rows}x{cols} matrix)"
            )
        return None

    def unit_size(self, shape: torch.Size | tuple[int, ...]) -> int:
        return self.h * self.w

    def unit_scores(self, scores: torch.Tensor) -> torch.Tensor:
        self.check(scores.shape)
        rows, cols = as_matrix_shape(scores.shape)
        tiles = float_scores(scores).reshape(rows // self.h, self.h, cols // self.w, self.w)
        return sum_finite(tiles, (1, 3))  # (rows/H, cols/W)

    def expand(self, unit_mask: torch.Tensor, shape: torch.Size | tuple[int, ...]) -> torch.Tensor:
        rows = unit_mask.repeat_interleave(self.h, 0).repeat_interleave(self.w, 1)
        return rows.reshape(shape)

    def is_valid(self, mask: torch.Tensor) -> bool:
        check_mask(mask)
        if mask.dim() == 0:
            return False
        rows, cols = as_matrix_shape(mask.shape)
        if rows % self.h or cols % self.w:
            return False
        tiles = mask.reshape(rows // self.h, self.h, cols // self.w, self.w)
        any_kept = tiles.any(3).any(1)
        all_kept = tiles.all(3).all(1)
        return bool((any_kept == all_kept).all())
