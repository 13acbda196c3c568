"""Index encodings: how the kept positions of one tensor are stored next to its kept values.

Each codec turns a :class:`~sparsetorch.checkpoint.support.Support` into a few small integer
arrays ("parts") and back. Codecs are tried in ``ORDER``; the one with the fewest index bytes
wins (ties go to the earlier codec, so an N:M mask reports ``nm`` rather than ``bitmask``).

=========  =======================================  ==================================
codec      parts                                    index bytes
=========  =======================================  ==================================
nm         ``nm_index``: log2(M) bits per kept      nnz * log2(M) / 8
block      ``grid_*``: a flat codec on block grid   of the grid (numel / (h*w) cells)
bitmask    ``bitmask``: 1 bit per element           numel / 8
delta16    ``delta``: uint16 gap-1 per kept         2 * nnz   (every gap <= 65536)
delta32    ``delta``: uint32 gap-1 per kept         4 * nnz   (numel <= 2**32)
csr        ``crow`` int32/64, ``col`` uint8/16/32   (rows+1)*4 + nnz * (1, 2 or 4)
=========  =======================================  ==================================
"""

from __future__ import annotations

from sparsetorch._registry import Registry
from sparsetorch.checkpoint.codecs.base import Codec, PartsSpec, Plan, Shape, shape2d
from sparsetorch.checkpoint.codecs.base import choose as choose_among
from sparsetorch.checkpoint.codecs.bitmask import Bitmask
from sparsetorch.checkpoint.codecs.block import Block
from sparsetorch.checkpoint.codecs.csr import CSRIndex
from sparsetorch.checkpoint.codecs.delta import Delta
from sparsetorch.checkpoint.codecs.nm import NM
from sparsetorch.checkpoint.support import Support

# Preference order on ties; the flat codecs are also the candidates for a block grid.
ORDER = ("nm", "block", "bitmask", "delta16", "delta32", "csr")
FLAT = ("bitmask", "delta16", "delta32", "csr")

CODECS: Registry[Codec] = Registry("checkpoint index encoding")
CODECS.register("nm")(NM)
CODECS.register("block")(lambda: Block([get(name) for name in FLAT]))
CODECS.register("bitmask")(Bitmask)
CODECS.register("delta16")(lambda: Delta(16))
CODECS.register("delta32")(lambda: Delta(32))
CODECS.register("csr")(CSRIndex)

_INSTANCES: dict[str, Codec] = {}


def get(name: str) -> Codec:
    """The codec instance registered as ``name`` (unknown names raise ValueError)."""
    if name not in _INSTANCES:
        _INSTANCES[name] = CODECS.build(name)
    return _INSTANCES[name]


def choose(support: Support, shape: Shape, budget: int) -> tuple[Plan | None, str]:
    """Cheapest codec of ``ORDER`` below ``budget`` index bytes, and the detected pattern."""
    return choose_among([get(name) for name in ORDER], support, shape, budget)


__all__ = [
    "CODECS",
    "FLAT",
    "ORDER",
    "Codec",
    "PartsSpec",
    "Plan",
    "Shape",
    "choose",
    "get",
    "shape2d",
]
