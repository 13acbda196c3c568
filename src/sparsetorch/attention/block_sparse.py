"""Block-sparse attention from a given layout (Child et al. 2019; BigBird's block form).

``block(size, layout)``: the plane is tiled into ``size x size`` cells and ``layout[a, b]``
says whether query cell a attends to key cell b. A layout of R x C cells covers sequences up
to ``size·min(R, C)`` tokens; a shorter sequence uses the top-left corner, a longer one is an
error. O(n²·ρ) for a fraction ρ of True cells.
"""

from __future__ import annotations

import torch

from sparsetorch.attention.counting import rect_overlaps
from sparsetorch.attention.pattern import AttentionPattern, Bounds, Grid, MaskFn


class BlockPattern(AttentionPattern):
    def __init__(self, size: int, layout: torch.Tensor | list) -> None:
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise ValueError(f"block: size must be an int >= 1, got {size!r}")
        cells = torch.as_tensor(layout)
        if cells.dim() != 2 or cells.numel() == 0:
            raise ValueError(
                f"block: layout must be a non-empty 2-D grid, got shape {tuple(cells.shape)}"
            )
        if cells.dtype != torch.bool:
            if ((cells != 0) & (cells != 1)).any():
                raise ValueError("block: layout must hold booleans (or 0/1)")
            cells = cells != 0
        self.size = size
        self.cells = cells.cpu().contiguous()  # (R, C)
        self._key = (size, tuple(cells.shape), bytes(self.cells.numpy().tobytes()))
        self._tables: dict[torch.device, torch.Tensor] = {}

    def check(self, n: int) -> None:
        covered = self.size * min(self.cells.shape)
        if n > covered:
            raise ValueError(
                f"block: the layout covers sequences of length <= {covered} "
                f"({tuple(self.cells.shape)} cells of size {self.size}), got n={n}"
            )

    def _cells(self, device) -> torch.Tensor:
        device = torch.device(device or "cpu")
        if device not in self._tables:
            self._tables[device] = self.cells.to(device)
        return self._tables[device]

    def fn(self, n: int, device=None) -> MaskFn:
        cells, s = self._cells(device), self.size
        rows, cols = cells.shape

        def block(q, kv):
            return cells[(q // s).clamp(0, rows - 1), (kv // s).clamp(0, cols - 1)]

        return block

    def bounds(self, grid: Grid) -> Bounds:
        n, s = grid.n, self.size
        a, b = self._cells(grid.device).nonzero(as_tuple=True)  # True cells
        a, b = a * s, b * s
        inside = (a < n) & (b < n)
        a, b = a[inside], b[inside]
        count = rect_overlaps(
            a, (a + s).clamp(max=n), b, (b + s).clamp(max=n), grid.bq, grid.bk, grid.nqb, grid.nkb
        )
        return count, count

    def key(self) -> tuple:
        return self._key

    cost = "n²·ρ"

    def __repr__(self) -> str:
        return f"block({self.size}, {self.cells.int().tolist()})"


def block(size: int, layout: torch.Tensor | list) -> BlockPattern:
    """Block-sparse attention: query cell a attends to key cell b when ``layout[a, b]``."""
    return BlockPattern(size, layout)
