"""Attention backends by name. Each computes softmax attention restricted to a pattern, and
all agree with masked dense attention (rows without keys give zeros).

==============  ===============================================================================
``reference``   exact block-sparse attention in pure PyTorch, any device, memory ∝ the pattern
``flex``        ``torch.nn.attention.flex_attention`` compiled, with our analytic block masks
``band``        our Triton band kernel (``kernels/band_attention.py``): windows and bands only,
                CUDA, float16/bfloat16, forward and backward, GQA
``bands``       the band kernel over unions of periodic bands (``causal() & (local(w) |
                strided(k))``, ``dilated(w, d)``, disjoint bands): one call per piece, merged
                by log-sum-exp (``backends/bands.py``); global tokens joined to them with
                ``|`` as dense token rows and columns (``backends/tokens.py``)
``dense``       ``scaled_dot_product_attention`` with the n x n mask (the baseline)
``auto``        picks one by device, length and density (:func:`choose`), from measurements
                (the band kernel for finite bands in half precision from ``AUTO_BAND_MIN_N``)

Grouped-query attention (k and v with fewer heads than q, a divisor of them) runs natively in
``band``; the other backends repeat k and v to q's heads first.
==============  ===============================================================================
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from sparsetorch._registry import Registry
from sparsetorch.attention.backends import flex
from sparsetorch.attention.backends.bands import bands_attention
from sparsetorch.attention.backends.dense import dense_attention
from sparsetorch.attention.backends.flex import flex_attention
from sparsetorch.attention.backends.reference import BLOCK, reference_attention
from sparsetorch.attention.backends.tokens import Tokens, split_tokens
from sparsetorch.attention.bands import Band
from sparsetorch.attention.pattern import AttentionPattern, cached_layout
from sparsetorch.attention.pieces import Piece, pieces
from sparsetorch.kernels import band_attention as band_kernel


def repeat_kv(q: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
    """k and v with q's number of heads (grouped-query attention: head h reads h // group)."""
    group = q.shape[1] // k.shape[1]
    if group == 1:
        return k, v
    return k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)


class Backend:
    name = ""

    def __call__(self, q: Tensor, k: Tensor, v: Tensor, pattern: AttentionPattern, scale: float):
        raise NotImplementedError


BACKENDS: Registry[Backend] = Registry("attention backend")


@BACKENDS.register("reference")
class Reference(Backend):
    """Exact block-by-block attention in torch ops, any pattern; eager only: under
    ``torch.compile`` it runs as a graph break (its Python loops follow the pattern's
    data-dependent block schedule, which Inductor failed to compile on torch 2.13)."""

    name = "reference"

    @torch.compiler.disable(
        reason="the reference attention backend runs eagerly (Python loops over a "
        "data-dependent block schedule); under torch.compile(fullgraph=True) use "
        "backend='dense' on the CPU ('auto' picks this backend for training from n=2048 "
        "there), or 'auto' or 'flex' on CUDA"
    )
    def __call__(self, q, k, v, pattern, scale):
        k, v = repeat_kv(q, k, v)
        n, device = q.shape[2], q.device
        layout = cached_layout(pattern, n, BLOCK, device)
        return reference_attention(q, k, v, layout, pattern.fn(n, device), scale)


@BACKENDS.register("flex")
class Flex(Backend):
    name = "flex"

    def __call__(self, q, k, v, pattern, scale):
        return flex_attention(q, *repeat_kv(q, k, v), pattern, scale)


@BACKENDS.register("dense")
class Dense(Backend):
    name = "dense"

    def __call__(self, q, k, v, pattern, scale):
        return dense_attention(q, *repeat_kv(q, k, v), pattern, scale)


def band_unsupported(
    pattern: AttentionPattern, q: Tensor, k: Tensor, v: Tensor | None = None
) -> str | None:
    """None if the band kernel runs this pattern on these inputs; else why not."""
    if not _is_finite_band(pattern):
        return f"runs finite bands only (local(w), band(lo, hi)), got {pattern!r}"
    return band_kernel.unsupported(q, k, v)


@BACKENDS.register("band")
class BandKernel(Backend):
    """Our Triton band kernel: ``local(w)``, ``band(lo, hi)`` (``causal() & local(w)`` is
    ``band(0, w)``), fused forward and backward, no block lists."""

    name = "band"

    def __call__(self, q, k, v, pattern, scale):
        reason = band_unsupported(pattern, q, k, v)
        if reason is not None:
            raise ValueError(f"backend 'band' {reason}")
        # the kernel keeps non-finite keys and values to the rows that may see them
        return band_kernel.band_attention(q, k, v, pattern.lo, pattern.hi, scale, contain=True)


@functools.lru_cache(maxsize=256)
def cached_pieces(pattern: AttentionPattern, n: int) -> tuple[Piece, ...] | None:
    parts = pieces(pattern, n)
    return None if parts is None else tuple(parts)


def _bands_parts(
    pattern: AttentionPattern, n: int
) -> tuple[tuple[Piece, ...] | None, Tokens | None]:
    """The ``bands`` backend's pieces for this pattern (of its base when it has global tokens,
    None if the pieces cannot run it) and its global tokens (None without)."""
    tokens = split_tokens(pattern)
    return cached_pieces(pattern if tokens is None else tokens.base, n), tokens


def bands_unsupported(
    pattern: AttentionPattern, q: Tensor, k: Tensor, v: Tensor | None = None
) -> str | None:
    """None if the ``bands`` backend runs this pattern on these inputs; else why not."""
    if _bands_parts(pattern, q.shape[2])[0] is None:
        return (
            "runs unions of bands and periodic bands (band, local, causal, strided, dilated "
            "with | and &; the periods of overlapping strided parts dividing each other), "
            "optionally with global_tokens joined by | (B | global_tokens(G), A & (B | "
            f"global_tokens(G))), got {pattern!r}"
        )
    return band_kernel.unsupported(q, k, v)


@BACKENDS.register("bands")
class BandPieces(Backend):
    """Our band kernel over a union of periodic bands, piece by piece (``backends/bands.py``)."""

    name = "bands"

    def __call__(self, q, k, v, pattern, scale):
        reason = bands_unsupported(pattern, q, k, v)
        if reason is not None:
            raise ValueError(f"backend 'bands' {reason}")
        parts, tokens = _bands_parts(pattern, q.shape[2])
        return bands_attention(q, k, v, list(parts), scale, band_kernel.band_attention_lse, tokens)


# The auto choice (docs/benchmarks.md, "Attention"). Sparse backends pay per computed block,
# so what decides is the fraction of blocks a pattern needs (its block density), not its
# element density: strided(k) touches every block although it keeps 1/k of the pairs.
# CPU, from benchmarks/attention_cpu.py (local(64), H=4, D=64, one thread): a computed block
# costs the reference backend about 4-5x what it costs SDPA and FlexAttention about 4x, and
# at n=1k all are within 1.2x; so sparse from n=2048 when at most 1/5 of the blocks are needed.
# CUDA: FlexAttention; dense where the pattern needs more than half of the blocks. A finite
# band in half precision from AUTO_BAND_MIN_N on takes our band kernel: on an H100
# (benchmarks/attention_band.py, docs/benchmarks.md "Attention (GPU): the band kernel against
# the fastest dense" and "The cost of containing non-finite keys and values") the library's
# band call beat its flex call for local(512) and causal() & local(512), forward and forward +
# backward, at n = 4k, 16k and 64k (None: off); shorter lengths were not measured. From
# AUTO_BANDS_MIN_N a union of periodic bands with a strided part takes ``bands``: on an H100
# it ran causal() & (local(512) | strided(256)) and local(512) | strided(256) 2.6-9.0x faster
# than FlexAttention at 16k, 32k and 64k (forward; docs/benchmarks.md, "Strided patterns
# through the band kernel"), and 4x slower at 4k.
MIN_SPARSE_N = {"cpu": 2048, "cuda": 2048}
MAX_BLOCK_DENSITY = {"cpu": 0.2, "cuda": 0.5}
AUTO_BAND_MIN_N: int | None = 4096
AUTO_BANDS_MIN_N: int | None = 16384


def choose(
    pattern: AttentionPattern,
    n: int,
    device: torch.device,
    requires_grad: bool,
    dtype: torch.dtype = torch.float32,
    head_dim: int = 64,
    value_dim: int | None = None,
) -> str:
    """The backend ``auto`` runs for this pattern, length, device, need of gradients, dtype
    and head dimension (of q and k; ``value_dim``, v's, when it differs)."""
    kind = "cuda" if device.type == "cuda" else "cpu"
    cpu_flex = not requires_grad and dtype in flex.CPU_DTYPES  # float64: the reference
    sparse = "flex" if kind == "cuda" or cpu_flex else "reference"
    if n < MIN_SPARSE_N[kind]:
        return "dense"
    kernel_runs = (
        kind == "cuda"
        and band_kernel.available()
        and dtype in band_kernel.DTYPES
        and head_dim in band_kernel.HEAD_DIMS
        and value_dim in (None, head_dim)
    )
    if kernel_runs and _from(AUTO_BANDS_MIN_N, n) and _has_strided_piece(pattern, n):
        return "bands"  # before the block density: a strided part needs every block
    block = flex.BLOCK if sparse == "flex" else BLOCK
    density = _block_density(pattern, n, block)  # on the host: nothing launched on a GPU
    if density > MAX_BLOCK_DENSITY[kind]:
        return "dense"
    if kernel_runs and _from(AUTO_BAND_MIN_N, n) and _is_finite_band(pattern):
        return "band"
    return sparse


def _from(threshold: int | None, n: int) -> bool:
    """n reaches a length threshold (None: never)."""
    return threshold is not None and n >= threshold


def _has_strided_piece(pattern: AttentionPattern, n: int) -> bool:
    """A union of periodic bands with a periodic piece spanning at least a quarter of the
    offsets (a strided part: every block column for a block-mask kernel); narrow periodic
    pieces (``dilated(w, d)``) stay with the block masks."""
    if isinstance(pattern, Band):
        return False
    parts = cached_pieces(pattern, n)
    return parts is not None and any(p.period > 1 and p.hi - p.lo >= n // 4 for p in parts)


def _is_finite_band(pattern: AttentionPattern) -> bool:
    return isinstance(pattern, Band) and pattern.lo is not None and pattern.hi is not None


@functools.lru_cache(maxsize=256)
def _block_density(pattern: AttentionPattern, n: int, block: int) -> float:
    return pattern.block_density(n, block)


@BACKENDS.register("auto")
class Auto(Backend):
    name = "auto"

    def __call__(self, q, k, v, pattern, scale):
        grad = torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v))
        name = choose(pattern, q.shape[2], q.device, grad, q.dtype, q.shape[-1], v.shape[-1])
        return BACKENDS.build(name)(q, k, v, pattern, scale)


__all__ = [
    "AUTO_BANDS_MIN_N",
    "AUTO_BAND_MIN_N",
    "BACKENDS",
    "Auto",
    "Backend",
    "BandKernel",
    "BandPieces",
    "Dense",
    "Flex",
    "Reference",
    "band_unsupported",
    "bands_unsupported",
    "choose",
    "repeat_kv",
]
