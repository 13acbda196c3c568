"""Block layouts: which key blocks each query block needs, and which of them are full.

A layout tiles the n x n (query, key) plane into ``bq x bk`` blocks (the last row and column
of blocks clipped at n) and gives each block one state: empty (skipped), partial (the mask is
evaluated inside) or full (every pair of the whole tile allowed; a block clipped at n is at
most partial, as in FlexAttention, which treats the padding past n as masked). This is FlexAttention's ``BlockMask`` in our
own terms; :meth:`BlockLayout.to_block_mask` converts without evaluating any mask.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

import numpy as np
import torch
from torch import Tensor

EMPTY, PARTIAL, FULL = 0, 1, 2
# FlexBlocks.from_host widens index rows on the host (copying the zero padding) up to this many
# int32 entries (64 KiB, n <= 8192 at block 128); beyond, it copies the narrow rows and widens
# on the device (one fill and one copy), which moves ~n/128 x (run length) entries instead.
HOST_WIDEN_MAX = 1 << 14
STAGING_MIN = 1 << 16  # int32 entries (256 KiB): the smallest page-locked staging buffer
Which = Literal["partial", "full", "any"]


def blocks(block: int | tuple[int, int]) -> tuple[int, int]:
    """``128`` or ``(128, 64)`` -> (query rows, key columns) per block, validated."""
    bq, bk = (block, block) if isinstance(block, int) else tuple(block)
    if not all(isinstance(b, int) and not isinstance(b, bool) and b >= 1 for b in (bq, bk)):
        raise ValueError(f"block must be an int >= 1 or a pair of them, got {block!r}")
    return bq, bk


def ordered(mask: Tensor) -> tuple[Tensor, Tensor]:
    """Per row: how many True, and the True column indices first (ascending), as int32,
    row-major. ``mask`` may be a transposed view: argsort then keeps its column-major strides,
    and FlexAttention's kernels read index rows as contiguous (see :class:`FlexBlocks`)."""
    num = mask.sum(-1, dtype=torch.int32)  # (rows,)
    idx = torch.argsort((~mask).to(torch.int8), dim=-1, stable=True)  # (rows, cols)
    return num, idx.to(torch.int32).contiguous()


@dataclass(frozen=True, eq=False)
class BlockLayout:
    n: int
    block: tuple[int, int]  # (query rows, key columns) per block
    state: Tensor  # (nqb, nkb) int8: EMPTY / PARTIAL / FULL

    @property
    def shape(self) -> tuple[int, int]:
        return math.ceil(self.n / self.block[0]), math.ceil(self.n / self.block[1])

    def needed(self, which: Which = "any") -> Tensor:
        """(nqb, nkb) bool: the blocks of one kind ("any" = partial or full)."""
        if which == "any":
            return self.state != EMPTY
        return self.state == (PARTIAL if which == "partial" else FULL)

    def kv_blocks(self, which: Which = "any") -> tuple[Tensor, Tensor]:
        """Per query block: (count (nqb,), key block indices (nqb, nkb)) — FlexAttention's
        ``kv_num_blocks`` / ``kv_indices`` (for "partial") and ``full_kv_*`` (for "full")."""
        return ordered(self.needed(which))

    def q_blocks(self, which: Which = "any") -> tuple[Tensor, Tensor]:
        """Per key block: the query blocks that need it (the transposed layout)."""
        return ordered(self.needed(which).transpose(0, 1))

    @cached_property
    def schedule(self) -> tuple[Tensor, list[int], Tensor]:
        """Query blocks sorted by how many key blocks they need, for chunked kernels:
        (order (nqb,), sorted counts as a list, key block indices (nqb, nkb) in that order)."""
        num, idx = self.kv_blocks("any")
        order = torch.argsort(num, stable=True)
        return order, num[order].tolist(), idx[order]

    @property
    def block_density(self) -> float:
        """Fraction of blocks that are computed (partial or full)."""
        return float(self.needed().float().mean())

    def to(self, device: torch.device | str) -> BlockLayout:
        return BlockLayout(self.n, self.block, self.state.to(device))

    def flex_blocks(self) -> FlexBlocks:
        """The layout in FlexAttention's ordered form (both sides, partial and full)."""
        return FlexBlocks(
            self.n,
            self.block,
            *self.kv_blocks("partial"),
            *self.kv_blocks("full"),
            *self.q_blocks("partial"),
            *self.q_blocks("full"),
        )

    def to_block_mask(self, mask_mod: Callable) -> object:
        """A FlexAttention ``BlockMask`` with this layout (batch and heads broadcast)."""
        return self.flex_blocks().to_block_mask(mask_mod)

    def __repr__(self) -> str:
        nqb, nkb = self.shape
        counts = torch.bincount(self.state.flatten().long(), minlength=3).tolist()
        return (
            f"BlockLayout(n={self.n}, block={self.block}, blocks={nqb}x{nkb}: "
            f"{counts[FULL]} full, {counts[PARTIAL]} partial, {counts[EMPTY]} empty)"
        )


@dataclass(frozen=True, eq=False)
class FlexBlocks:
    """A layout as FlexAttention reads it: per query block the partial and the full key blocks
    (count (nqb,), indices (nqb, nkb)), and per key block the same for query blocks
    ((nkb,), (nkb, nqb)). Only the first ``count`` indices of a row are read, but the width
    must be the number of blocks: FlexAttention derives the length it covers from it.

    Every index tensor must be row-major: FlexAttention's Triton kernels take the row stride
    from the tensor but step along a row by +1 ("Q_IDX and Q_NUM_BLKS are always contiguous"
    in torch's flex_backwards template). A column-major ``q_idx`` (what ``argsort`` of a
    transposed layout returns) made the dK/dV loop visit the wrong query blocks: wrong dK and
    dV on CUDA, dQ and the forward (which read the row-major key side) right.
    ``to_block_mask`` therefore hands FlexAttention contiguous tensors only.
    """

    n: int
    block: tuple[int, int]
    kv_num: Tensor
    kv_idx: Tensor
    full_kv_num: Tensor
    full_kv_idx: Tensor
    q_num: Tensor
    q_idx: Tensor
    full_q_num: Tensor
    full_q_idx: Tensor

    @classmethod
    def from_host(
        cls,
        n: int,
        block: tuple[int, int],
        kv: list[np.ndarray],
        q: list[np.ndarray],
        device: torch.device | str | None,
    ) -> FlexBlocks:
        """From host arrays per side, ``[count, indices, full count, full indices]`` (int32;
        indices (rows, w) with w <= the number of blocks of the other side, the unused tail of
        a row anything in range), in one host buffer and one host-to-device copy. Index rows
        are widened to the number of blocks on the host for small grids (``HOST_WIDEN_MAX``),
        else on the device: one zero fill and one copy (two when the block grid is not square).
        The index tensors are row-major views of one buffer."""
        nqb, nkb = math.ceil(n / block[0]), math.ceil(n / block[1])
        counts = [kv[0], kv[2], q[0], q[2]]
        c = sum(a.size for a in counts)
        if 4 * nqb * nkb <= HOST_WIDEN_MAX:
            host, staged = _host_buffer(c + 4 * nqb * nkb, device)
            _widen_on_host(host, counts, kv, q, nqb, nkb)
            return cls.from_flat(n, block, _to_device(staged, device))  # the one transfer
        # a side's two index arrays share one width (on a square grid, both sides do: one copy
        # widens all); narrower ones are padded to it on the host
        wk, wq = (max(s[1].shape[1], s[3].shape[1]) for s in (kv, q))
        if nqb == nkb:
            wk = wq = max(wk, wq)
        kv, q = (
            [a if a.ndim == 1 else _pad_columns(a, w) for a in s] for s, w in ((kv, wk), (q, wq))
        )
        parts = [a.ravel() for a in (*counts, kv[1], kv[3], q[1], q[3])]
        host, staged = _host_buffer(sum(a.size for a in parts), device)
        np.concatenate(parts, out=host)
        flat = _to_device(staged, device)  # the one transfer
        return cls._from_parts(n, block, flat[:c], _widened_on_device(flat[c:], wk, wq, nqb, nkb))

    @classmethod
    def from_flat(cls, n, block: tuple[int, int], flat: Tensor) -> FlexBlocks:
        """Views of one int32 buffer laid out as :func:`flat_fields` says. ``n`` may be a
        symbolic size (the in-graph build of :mod:`..backends.flex_band` writes this
        buffer)."""
        nqb, nkb = -(-n // block[0]), -(-n // block[1])
        views = [
            flat.narrow(0, offset, rows)
            if width is None
            else flat.narrow(0, offset, rows * width).view(rows, width)
            for rows, width, offset in flat_fields(nqb, nkb)
        ]
        return cls(n, block, *views)

    @classmethod
    def _from_parts(cls, n, block: tuple[int, int], counts: Tensor, wide: Tensor) -> FlexBlocks:
        """From the flat counts and the flat widened index rows (views, nothing copied)."""
        nqb, nkb = -(-n // block[0]), -(-n // block[1])
        kv_num, full_kv_num, q_num, full_q_num = counts.split([nqb, nqb, nkb, nkb])
        kv_wide = wide[: 2 * nqb * nkb].view(2, nqb, nkb)  # (indices, full indices)
        q_wide = wide[2 * nqb * nkb :].view(2, nkb, nqb)
        return cls(
            n,
            block,
            kv_num,
            kv_wide[0],
            full_kv_num,
            kv_wide[1],
            q_num,
            q_wide[0],
            full_q_num,
            q_wide[1],
        )

    def to(self, device: torch.device | str | None) -> FlexBlocks:
        """These lists (on the CPU) on ``device``, packed into one host-to-device copy
        (:meth:`from_host`)."""
        host = [t.numpy() for t in self.tensors()]
        return FlexBlocks.from_host(self.n, self.block, host[:4], host[4:], device)

    def tensors(self) -> tuple[Tensor, ...]:
        """The eight lists in field order (kv, full kv, q, full q; count then indices)."""
        return (
            self.kv_num,
            self.kv_idx,
            self.full_kv_num,
            self.full_kv_idx,
            self.q_num,
            self.q_idx,
            self.full_q_num,
            self.full_q_idx,
        )

    def to_block_mask(self, mask_mod: Callable) -> object:
        """A FlexAttention ``BlockMask`` (batch and heads broadcast); nothing is evaluated."""

        def bh(t: Tensor) -> Tensor:
            return (t if t.is_contiguous() else t.contiguous()).view(1, 1, *t.shape)  # row-major

        # Both sides from our layout (the transposed one too: no dense round trip).
        lists = [bh(t) for t in self.tensors()]
        return _block_mask(self.n, self.block, lists, mask_mod)


def _block_mask(n, block: tuple[int, int], lists: list[Tensor], mask_mod: Callable):
    """FlexAttention's ``BlockMask`` from :class:`FlexBlocks`' eight lists in field order, each
    with batch and head dimensions (1, 1, ...)."""
    from torch.nn.attention.flex_attention import BlockMask

    kv_num, kv_idx, full_kv_num, full_kv_idx, q_num, q_idx, full_q_num, full_q_idx = lists
    return BlockMask(
        seq_lengths=(n, n),
        kv_num_blocks=kv_num,
        kv_indices=kv_idx,
        full_kv_num_blocks=full_kv_num,
        full_kv_indices=full_kv_idx,
        q_num_blocks=q_num,
        q_indices=q_idx,
        full_q_num_blocks=full_q_num,
        full_q_indices=full_q_idx,
        BLOCK_SIZE=block,
        mask_mod=mask_mod,
    )


def flat_fields(nqb: int, nkb: int) -> list[tuple]:
    """Where each of :class:`FlexBlocks`' eight lists lies in one flat int32 buffer, in field
    order: (rows, row width or None for a count array, offset). The counts come first (kv,
    full kv: nqb each; q, full q: nkb each), then the index rows (kv, full kv: nqb x nkb; q,
    full q: nkb x nqb)."""
    c, w = 2 * (nqb + nkb), nqb * nkb
    return [
        (nqb, None, 0),
        (nqb, nkb, c),
        (nqb, None, nqb),
        (nqb, nkb, c + w),
        (nkb, None, 2 * nqb),
        (nkb, nqb, c + 2 * w),
        (nkb, None, 2 * nqb + nkb),
        (nkb, nqb, c + 3 * w),
    ]


def block_mask_from_flat(n: int, block: tuple[int, int], flat: Tensor, mask_mod: Callable):
    """FlexAttention's ``BlockMask`` (batch and heads broadcast) straight from a flat buffer
    (:func:`flat_fields`): eight strided views, 12–14 µs of host time with the mask_mod where
    ``FlexBlocks.from_flat(...).to_block_mask(...)`` takes 34–36 µs
    (``benchmarks/attention_mask_host.py``, CPU); this runs on a window's first call at a
    length, while the GPU waits for the host."""
    nqb, nkb = -(-n // block[0]), -(-n // block[1])
    base = flat.storage_offset()
    lists = [
        flat.as_strided((1, 1, rows), (0, 0, 1), base + offset)
        if width is None
        else flat.as_strided((1, 1, rows, width), (0, 0, width, 1), base + offset)
        for rows, width, offset in flat_fields(nqb, nkb)
    ]
    return _block_mask(n, block, lists, mask_mod)


def _host_buffer(size: int, device: torch.device | str | None) -> tuple[np.ndarray, Tensor]:
    """An int32 host buffer (numpy view, tensor) for one copy to ``device``: page-locked when
    the device is a GPU (from torch's caching host allocator), so the copy is truly
    asynchronous."""
    if torch.device(device or "cpu").type == "cpu":
        array = np.empty(size, dtype=np.int32)
        return array, torch.from_numpy(array)
    # one size class for every usual build (torch's host allocator rounds sizes up to powers
    # of two and allocates each class once; a fresh page-locked allocation costs ~ms)
    staged = torch.empty(max(size, STAGING_MIN), dtype=torch.int32, pin_memory=True)[:size]
    return staged.numpy(), staged


def _to_device(staged: Tensor, device: torch.device | str | None) -> Tensor:
    """The one host-to-device copy, not waiting for the device. From pageable memory a CUDA
    copy waits until the stream has run every queued kernel (measured on an H200: a cold
    block-mask build right after a projection stalled the host ~0.45 ms); from page-locked
    memory with ``non_blocking`` it is queued and the host goes on. torch's caching host
    allocator keeps the staging buffer until the copy has run."""
    device = torch.device(device or "cpu")
    return staged if device.type == "cpu" else staged.to(device, non_blocking=True)


def _pad_columns(a: np.ndarray, width: int) -> np.ndarray:
    """(rows, w) -> (rows, width), zeros on the right."""
    if a.shape[1] == width:
        return a
    out = np.zeros((a.shape[0], width), dtype=a.dtype)
    out[:, : a.shape[1]] = a
    return out


def _widen_on_host(host: np.ndarray, counts: list, kv: list, q: list, nqb: int, nkb: int) -> None:
    """Into ``host``: the counts, then the (2, nqb, nkb) key-side and (2, nkb, nqb) query-side
    index rows padded with zeros."""
    c = sum(a.size for a in counts)
    np.concatenate(counts, out=host[:c])
    host[c:] = 0
    kv_wide = host[c : c + 2 * nqb * nkb].reshape(2, nqb, nkb)
    q_wide = host[c + 2 * nqb * nkb :].reshape(2, nkb, nqb)
    for wide, side in ((kv_wide, kv), (q_wide, q)):
        wide[0, :, : side[1].shape[1]] = side[1]
        wide[1, :, : side[3].shape[1]] = side[3]


def _widened_on_device(narrow: Tensor, wk: int, wq: int, nqb: int, nkb: int) -> Tensor:
    """(2, nqb, wk) key-side then (2, nkb, wq) query-side rows, flat -> one zero-padded buffer
    of (2, nqb, nkb) then (2, nkb, nqb): a fill and one copy (two if the grid is not square,
    where the widths may differ)."""
    wide = narrow.new_zeros(4 * nqb * nkb)
    if nqb == nkb and wk == wq:
        wide.view(4, nqb, nkb)[:, :, :wk] = narrow.view(4, nqb, wk)
    else:
        split = 2 * nqb * wk
        wide[: 2 * nqb * nkb].view(2, nqb, nkb)[:, :, :wk] = narrow[:split].view(2, nqb, wk)
        wide[2 * nqb * nkb :].view(2, nkb, nqb)[:, :, :wq] = narrow[split:].view(2, nkb, wq)
    return wide
