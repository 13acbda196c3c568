"""Block masks (every h x w tile of the (rows, cols) view all kept or all pruned).

The block grid (rows/h, cols/w) is itself stored with the cheapest flat codec; the kept values
are stored in row-major element order like every other codec. ``channel`` is the case of whole
rows (h, w) = (1, cols): output channels of a Linear/Conv weight.
"""

from __future__ import annotations

import numpy as np

from sparsetorch.checkpoint.codecs.base import Codec, PartsSpec, Plan, Shape, choose, shape2d
from sparsetorch.checkpoint.errors import CheckpointError
from sparsetorch.checkpoint.support import Support

_SAMPLE_ROWS = 8  # checked first, so unstructured masks are rejected cheaply


def _candidates(n: int) -> list[int]:
    """Powers of two dividing n (from 2), then n itself: each divides the next."""
    out = [2**k for k in range(1, n.bit_length()) if n % 2**k == 0]
    return [*out, n] if n > 1 and (not out or out[-1] != n) else out


def _uniform_runs(mask2d: np.ndarray, w: int) -> bool:
    """Every run of w consecutive elements of a row is all True or all False."""
    rows, cols = mask2d.shape
    runs = mask2d.reshape(rows, cols // w, w)
    return bool((runs == runs[:, :, :1]).all())


def _widest(mask2d: np.ndarray) -> int:
    width = 1
    for w in _candidates(mask2d.shape[1]):
        if not _uniform_runs(mask2d[:_SAMPLE_ROWS], w) or not _uniform_runs(mask2d, w):
            break
        width = w
    return width


def detect_block(support: Support, shape: Shape) -> tuple[int, int] | None:
    """The largest (h, w) tile (powers of two or the full extent) the mask is constant on."""
    if support.nnz in (0, support.numel):
        return None
    mask2d = support.mask().reshape(shape2d(shape))
    w = _widest(mask2d)
    h = _widest(mask2d.T)
    return None if (h, w) == (1, 1) else (h, w)


def pattern_name(h: int, w: int, shape: Shape) -> str:
    return "channel" if (h, w) == (1, shape2d(shape)[1]) else f"block{h}x{w}"


def _grid_shape(shape: Shape, h: int, w: int) -> tuple[int, int]:
    rows, cols = shape2d(shape)
    return rows // h, cols // w


class Block(Codec):
    name = "block"

    def __init__(self, flat: list[Codec]) -> None:
        self.flat = {codec.name: codec for codec in flat}  # candidates for the block grid

    def plan(self, support: Support, shape: Shape, budget: int) -> Plan | None:
        found = detect_block(support, shape)
        if found is None:
            return None
        h, w = found
        grid = self._grid(support, shape, h, w)
        inner, _ = choose(list(self.flat.values()), grid, _grid_shape(shape, h, w), 2**62)
        params = {"h": h, "w": w, "index": inner.codec}
        return Plan(self.name, inner.nbytes, params, pattern_name(h, w, shape))

    @staticmethod
    def _grid(support: Support, shape: Shape, h: int, w: int) -> Support:
        rows, cols = shape2d(shape)
        tiles = support.mask().reshape(rows // h, h, cols // w, w)
        grid = np.ascontiguousarray(tiles[:, 0, :, 0]).reshape(-1)  # (rows/h * cols/w,)
        return Support(grid.size, mask=grid)

    def encode(self, support: Support, shape: Shape, params: dict) -> dict[str, np.ndarray]:
        h, w = params["h"], params["w"]
        grid = self._grid(support, shape, h, w)
        parts = self.flat[params["index"]].encode(grid, _grid_shape(shape, h, w), {})
        return {f"grid_{k}": v for k, v in parts.items()}

    def _check(self, shape: Shape, nnz: int, params: dict) -> tuple[int, int, Codec]:
        h, w, index = params.get("h"), params.get("w"), params.get("index")
        if (
            not (isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0)
            or index not in self.flat
        ):
            raise CheckpointError(f"block parameters {params} are invalid")
        rows, cols = shape2d(shape)
        if rows % h or cols % w or nnz % (h * w):
            raise CheckpointError(f"block {h}x{w} does not tile shape {shape} with nnz={nnz}")
        return h, w, self.flat[index]

    def parts_spec(self, shape: Shape, nnz: int, params: dict) -> PartsSpec:
        h, w, inner = self._check(shape, nnz, params)
        grid_spec = inner.parts_spec(_grid_shape(shape, h, w), nnz // (h * w), {})
        return {f"grid_{k}": v for k, v in grid_spec.items()}

    def decode(self, parts: dict[str, np.ndarray], shape: Shape, nnz: int, params: dict) -> Support:
        h, w, inner = self._check(shape, nnz, params)
        grid_parts = {k.removeprefix("grid_"): v for k, v in parts.items()}
        grid_rows, grid_cols = _grid_shape(shape, h, w)
        grid = inner.decode(grid_parts, (grid_rows, grid_cols), nnz // (h * w), {})
        tiles = grid.mask().reshape(grid_rows, 1, grid_cols, 1)
        mask = np.broadcast_to(tiles, (grid_rows, h, grid_cols, w)).reshape(-1)  # copies
        return Support(mask.size, mask=mask)
