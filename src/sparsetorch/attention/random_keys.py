"""Random attention (BigBird, Zaheer et al. 2020): each query attends to r random keys.

``random(r, seed)`` draws, for every query, r distinct keys uniformly from ``[0, n)`` (all n
keys when r >= n) with Floyd's sampling algorithm and a seeded ``torch.Generator`` on the CPU,
so the same (r, seed, n) gives the same pattern bitwise on every device. The draw depends on n:
the keys of a sequence of length n are a fresh draw, not a crop of a longer one.

``random(r, seed, block=b)`` is BigBird's block form: each block of b queries attends to r
random blocks of b keys, which block-sparse kernels can skip over. O(nr) (O(nrb) with blocks).
"""

from __future__ import annotations

import math

import torch

from sparsetorch.attention.counting import rect_overlaps
from sparsetorch.attention.pattern import AttentionPattern, Bounds, Grid, MaskFn


def sample_without_replacement(rows: int, population: int, r: int, seed: int) -> torch.Tensor:
    """(rows, r) int64: per row r distinct values in [0, population) (Floyd's algorithm).

    For j = population - r .. population - 1: draw t uniform in [0, j]; keep t unless already
    chosen, else keep j. Each r-subset is equally likely.
    """
    g = torch.Generator().manual_seed(seed)
    chosen = torch.empty(rows, r, dtype=torch.int64)
    for col, j in enumerate(range(population - r, population)):
        t = torch.randint(0, j + 1, (rows,), generator=g)
        seen = (chosen[:, :col] == t[:, None]).any(1)
        chosen[:, col] = torch.where(seen, j, t)
    return chosen


class RandomKeys(AttentionPattern):
    def __init__(self, r: int, seed: int, block: int = 1) -> None:
        for name, value, minimum in (("r", r, 1), ("block", block, 1), ("seed", seed, 0)):
            if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
                raise ValueError(f"random: {name} must be an int >= {minimum}, got {value!r}")
        self.r, self.seed, self.block = r, seed, block
        self._tables: dict[tuple[int, torch.device], torch.Tensor] = {}

    def table(self, n: int, device=None) -> torch.Tensor:
        """(ceil(n / block), min(r, ceil(n / block))) int64: the key blocks of each query block."""
        device = torch.device(device or "cpu")
        found = self._tables.get((n, device))
        if found is not None:
            return found
        nb = math.ceil(n / self.block)
        keys = sample_without_replacement(nb, nb, min(self.r, nb), self.seed).to(device)
        if not torch.compiler.is_compiling():  # a traced (fake) table must not be kept
            if len(self._tables) >= 8:  # a few lengths at a time (each table is n x r)
                self._tables.pop(next(iter(self._tables)))
            self._tables[(n, device)] = keys
        return keys

    def fn(self, n: int, device=None) -> MaskFn:
        table, b = self.table(n, device), self.block
        last = table.shape[0] - 1

        def random_keys(q, kv):
            qb, kb = (q // b).clamp(0, last), kv // b
            hit = table[qb, 0] == kb
            for t in range(1, table.shape[1]):  # pointwise (FlexAttention cannot reduce)
                hit = hit | (table[qb, t] == kb)
            return hit

        return random_keys

    def bounds(self, grid: Grid) -> Bounds:
        n, b = grid.n, self.block
        if b == 1 and grid.nqb == grid.nkb == 1:  # the whole plane: r distinct keys per row
            count = torch.full((1, 1), n * min(self.r, n), device=grid.device)
            return count, count
        table = self.table(n, grid.device)  # (nb, r)
        r0 = (torch.arange(table.shape[0], device=grid.device) * b)[:, None].expand_as(table)
        c0 = table * b
        count = rect_overlaps(
            r0.flatten(),
            (r0 + b).clamp(max=n).flatten(),
            c0.flatten(),
            (c0 + b).clamp(max=n).flatten(),
            grid.bq,
            grid.bk,
            grid.nqb,
            grid.nkb,
        )
        return count, count

    def key(self) -> tuple:
        return (self.r, self.seed, self.block)

    @property
    def cost(self) -> str:
        return "nr" if self.block == 1 else "nrb"

    def __repr__(self) -> str:
        extra = "" if self.block == 1 else f", block={self.block}"
        return f"random({self.r}, seed={self.seed}{extra})"


def random(r: int, seed: int, block: int = 1) -> RandomKeys:
    """r random keys per query (BigBird), deterministic by seed; ``block``: BigBird blocks."""
    return RandomKeys(r, seed, block)
