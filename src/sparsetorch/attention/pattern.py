"""The attention pattern: which keys j each query i may attend to, as a composable value.

Every pattern knows three things about itself:

- ``fn(n, device)``: a pointwise mask function ``(q_idx, kv_idx) -> bool`` on broadcastable
  integer tensors. It is the single source of truth for the mask: ``mask(n)``, the reference
  backend's tiles and FlexAttention's ``mask_mod`` all call it.
- ``bounds(grid)``: lower and upper bounds on the number of allowed pairs in every block of a
  grid, computed analytically. Elementary patterns give exact counts; ``|``, ``&`` and ``~``
  combine bounds (Fréchet inequalities), and only blocks whose state stays uncertain are
  evaluated with ``fn`` — tile by tile, never as an n x n grid.
- ``cost``: the textbook O() cost (``nw`` for local, ``n(w + g)`` for Longformer).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch
from torch import Tensor

from sparsetorch._eager_cache import eager_cache
from sparsetorch.attention.layout import EMPTY, FULL, PARTIAL, BlockLayout, FlexBlocks, blocks

MaskFn = Callable[[Tensor, Tensor], Tensor]  # (q_idx, kv_idx) -> allowed, broadcasting
Bounds = tuple[Tensor, Tensor]  # (lo, hi) allowed pairs per block, int64 (nqb, nkb)

_TILE_ELEMENTS = 1 << 22  # mask elements evaluated at once when refining blocks
# Block grids up to this size build FlexAttention's lists for a GPU on the CPU and send them in
# one copy (H200, benchmarks/attention_gpu.py "Other patterns", n = 4096 at block 128: 1.15-1.32
# ms against 2.0-2.7 ms all on the device, 0.3-0.65 ms with the CPU layout already cached; on
# this repository's CPU the CPU build takes 2.5-3.6 ms at n = 16384, the device 1.4-2.2 ms).
HOST_BUILD_MAX_BLOCKS = 64 * 64


class Grid:
    """The n x n (query, key) plane tiled into ``bq x bk`` blocks, the last ones clipped."""

    def __init__(self, n: int, bq: int, bk: int, device: torch.device | str | None = None):
        self.n, self.bq, self.bk = n, bq, bk
        self.device = torch.device(device or "cpu")
        self.nqb, self.nkb = math.ceil(n / bq), math.ceil(n / bk)
        q0 = torch.arange(self.nqb, device=self.device) * bq
        k0 = torch.arange(self.nkb, device=self.device) * bk
        self.qs, self.qe = q0[:, None], (q0 + bq).clamp(max=n)[:, None]  # (nqb, 1)
        self.ks, self.ke = k0[None, :], (k0 + bk).clamp(max=n)[None, :]  # (1, nkb)
        self.area = (self.qe - self.qs) * (self.ke - self.ks)  # (nqb, nkb)


def tile_counts(fn: MaskFn, grid: Grid, qb: Tensor, kb: Tensor) -> Tensor:
    """Exact number of allowed pairs in the blocks (qb[t], kb[t]), evaluating ``fn`` on them."""
    out = torch.zeros(qb.numel(), dtype=torch.int64, device=grid.device)
    rows = torch.arange(grid.bq, device=grid.device)
    cols = torch.arange(grid.bk, device=grid.device)
    step = max(1, _TILE_ELEMENTS // (grid.bq * grid.bk))
    for s in range(0, qb.numel(), step):
        qpos = qb[s : s + step, None] * grid.bq + rows  # (c, bq)
        kpos = kb[s : s + step, None] * grid.bk + cols  # (c, bk)
        allowed = fn(qpos[:, :, None], kpos[:, None, :])  # (c, bq, bk)
        inside = (qpos < grid.n)[:, :, None] & (kpos < grid.n)[:, None, :]
        out[s : s + step] = (allowed & inside).sum((1, 2))
    return out


class AttentionPattern:
    """Base class: subclasses give ``fn``, ``bounds``, ``key`` and ``cost``."""

    exact: bool = True  # do ``bounds`` always give exact counts?

    # ---- to implement ----------------------------------------------------------------------
    def fn(self, n: int, device: torch.device | str | None = None) -> MaskFn:
        raise NotImplementedError

    def bounds(self, grid: Grid) -> Bounds:
        raise NotImplementedError

    def key(self) -> tuple:
        """The value identity (equality, hashing, caches)."""
        raise NotImplementedError

    @property
    def cost(self) -> str:
        raise NotImplementedError

    def check(self, n: int) -> None:
        """Raise ValueError when the pattern is not defined for sequence length n."""

    # ---- public API ------------------------------------------------------------------------
    def mask(self, n: int, device: torch.device | str | None = None) -> Tensor:
        """The dense (n, n) bool mask, True = query i may attend to key j. For tests."""
        self._validate(n)
        idx = torch.arange(n, device=device)
        return torch.broadcast_to(self.fn(n, device)(idx[:, None], idx[None, :]), (n, n))

    def nnz(self, n: int) -> int:
        """The exact number of allowed (query, key) pairs, without an n x n evaluation."""
        self._validate(n)
        return _nnz(self, n)

    def density(self, n: int) -> float:
        return self.nnz(n) / (n * n)

    def block_layout(
        self, n: int, block: int | tuple[int, int] = 128, device: torch.device | str | None = None
    ) -> BlockLayout:
        """Which key blocks each query block needs (partial or full), computed analytically."""
        self._validate(n)
        grid = Grid(n, *blocks(block), device)
        lo, hi = self.bounds(grid)
        if not self.exact:
            lo, hi = _refine(self, grid, lo, hi, _uncertain_state(lo, hi, grid.area))
        # Full means the whole bq x bk tile: blocks clipped at n stay partial (FlexAttention's
        # convention, where the padding past n counts as masked).
        state = torch.where(hi == 0, EMPTY, torch.where(lo == grid.bq * grid.bk, FULL, PARTIAL))
        return BlockLayout(n, (grid.bq, grid.bk), state.to(torch.int8))

    def block_density(self, n: int, block: int | tuple[int, int] = 128) -> float:
        """Fraction of the blocks a sparse backend computes (partial or full), from the layout
        on the host: deciding a backend launches nothing on the GPU (patterns may have a
        closed form)."""
        return _layout_block_density(self, n, blocks(block))

    def flex_blocks(
        self, n: int, block: int | tuple[int, int] = 128, device: torch.device | str | None = None
    ) -> FlexBlocks:
        """The block layout in FlexAttention's ordered form (patterns may have a fast path).
        On an accelerator, a grid of at most ``HOST_BUILD_MAX_BLOCKS`` blocks is built on the
        CPU (cached: ``auto`` has usually built it already to decide) and sent in one copy;
        there, the dozens of small device operations of a build cost more than that copy."""
        bq, bk = blocks(block)
        device = torch.device(device or "cpu")
        if device.type == "cpu" or math.ceil(n / bq) * math.ceil(n / bk) > HOST_BUILD_MAX_BLOCKS:
            return self.block_layout(n, (bq, bk), device).flex_blocks()
        return cached_layout(self, n, (bq, bk), torch.device("cpu")).flex_blocks().to(device)

    def mask_mod(self, n: int, device: torch.device | str | None = None) -> Callable:
        """FlexAttention's ``mask_mod(b, h, q_idx, kv_idx)`` for sequence length n."""
        self._validate(n)
        fn = self.fn(n, device)

        def mask_mod(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
            return fn(q_idx, kv_idx)

        return mask_mod

    def describe(self, n: int) -> str:
        """One line: the pattern, its textbook O() cost, its exact nnz."""
        nnz = self.nnz(n)
        return (
            f"{self!r}: O({self.cost}); at n={n}: {nnz:,} of {n * n:,} pairs "
            f"(density {nnz / (n * n):.4%})"
        )

    # ---- algebra ---------------------------------------------------------------------------
    def __or__(self, other: AttentionPattern) -> AttentionPattern:
        from sparsetorch.attention.algebra import union

        return union(self, _as_pattern(other, "|"))

    def __and__(self, other: AttentionPattern) -> AttentionPattern:
        from sparsetorch.attention.algebra import intersection

        return intersection(self, _as_pattern(other, "&"))

    def __invert__(self) -> AttentionPattern:
        from sparsetorch.attention.algebra import complement

        return complement(self)

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.key() == other.key()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.key()))

    # ---- internals -------------------------------------------------------------------------
    def _validate(self, n: int) -> None:
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"sequence length n must be an int >= 1, got {n!r}")
        self.check(n)


def _as_pattern(other: object, op: str) -> AttentionPattern:
    if not isinstance(other, AttentionPattern):
        raise TypeError(f"cannot combine an attention pattern with {type(other).__name__} by {op}")
    return other


def _uncertain_state(lo: Tensor, hi: Tensor, area: Tensor) -> Tensor:
    """Blocks whose state (empty / partial / full) the bounds do not settle."""
    return ((lo == 0) & (hi > 0)) | ((hi == area) & (lo < area))


def _refine(pattern: AttentionPattern, grid: Grid, lo: Tensor, hi: Tensor, where: Tensor) -> Bounds:
    """Replace the bounds of the blocks in ``where`` by exact counts from ``fn``."""
    qb, kb = where.nonzero(as_tuple=True)
    if qb.numel() == 0:
        return lo, hi
    counts = tile_counts(pattern.fn(grid.n, grid.device), grid, qb, kb)
    lo, hi = lo.clone(), hi.clone()
    lo[qb, kb] = counts
    hi[qb, kb] = counts
    return lo, hi


@eager_cache(maxsize=64)
def cached_layout(
    pattern: AttentionPattern, n: int, block: int | tuple[int, int], device: torch.device
) -> BlockLayout:
    """``pattern.block_layout(n, block, device)``, cached (the backends' layouts)."""
    return pattern.block_layout(n, block, device)


# A function of the pattern's value, n and the block only, computed on CPU tensors: inside
# torch.compile it is evaluated once when tracing, not traced (Inductor failed on the layout's
# data-dependent steps: "vr must not be None for symbol", torch 2.13, auto at n = 2100).
# Patterns with a closed form (bands) override ``block_density`` in plain Python, which
# traces even for a pattern built inside the compiled function.
@torch.compiler.assume_constant_result
def _layout_block_density(pattern: AttentionPattern, n: int, block: tuple[int, int]) -> float:
    return cached_layout(pattern, n, block, torch.device("cpu")).block_density


@functools.lru_cache(maxsize=256)
def _nnz(pattern: AttentionPattern, n: int) -> int:
    lo, hi = pattern.bounds(Grid(n, n, n))  # one block: the closed form for exact patterns
    if pattern.exact or int(lo) == int(hi):
        return int(lo)
    block = max(64, 64 * math.ceil(n / (1024 * 64)))  # at most ~1024^2 blocks
    grid = Grid(n, block, block)
    lo, hi = pattern.bounds(grid)
    lo, _ = _refine(pattern, grid, lo, hi, lo != hi)
    return int(lo.sum())
