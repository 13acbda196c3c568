"""The flex backend: ``torch.nn.attention.flex_attention``, compiled, with our block layouts.

The ``BlockMask`` is built from the pattern's analytic :class:`BlockLayout` (both the key side
and the transposed query side), never by ``create_block_mask``'s n x n evaluation, and cached
per (pattern, n, device, block). ``flex_attention`` is compiled once with dynamic shapes, so a
new sequence length does not recompile (a new pattern structure does).

On CUDA a finite band (``local(w)``, ``band(lo, hi)``) also has a compiled call that builds its
block lists itself, as torch ops on the symbolic length (:mod:`.flex_band`): nothing is built
on the host, at the price of a few small kernels per call. The first call at a length takes
that call; later calls at the length take the cached host-built mask (built on the second
call), which is faster per call. A length seen once costs no build; a length used repeatedly
pays one host build. While an outer ``torch.compile`` traces, the in-graph build is chosen (no
Python state is read or written then); compiling a whole model that uses this backend is not
tested.

On CPU, torch (2.11–2.13) compiles FlexAttention for inference only: its backward raises
NotImplementedError. With gradients on CPU this backend therefore runs FlexAttention forward
and the reference backend's exact block-sparse backward (which recomputes the log-sum-exp).
On CUDA, FlexAttention's own compiled backward runs, for every pattern (its block lists must
be row-major: see :class:`~sparsetorch.attention.layout.FlexBlocks`).
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Callable

import torch
from torch import Tensor

from sparsetorch.attention.backends import reference
from sparsetorch.attention.backends.flex_band import compiled_band_attention
from sparsetorch.attention.bands import Band
from sparsetorch.attention.layout import blocks
from sparsetorch.attention.pattern import AttentionPattern, cached_layout

BLOCK = 128  # FlexAttention's default sparse block size


def in_graph_band(pattern: AttentionPattern) -> bool:
    """A finite, non-empty band (local(w), band(lo, hi)): on CUDA its block mask is built in
    the compiled call (:mod:`.flex_band`), not on the host and cached."""
    return (
        isinstance(pattern, Band)
        and pattern.lo is not None
        and pattern.hi is not None
        and pattern.lo <= pattern.hi
    )


class _SeenOnce:
    """Keys called once so far (bounded: the least recently used are forgotten)."""

    def __init__(self, capacity: int = 1024) -> None:
        self.keys: OrderedDict = OrderedDict()
        self.capacity = capacity

    def first_call(self, key) -> bool:
        if key in self.keys:
            self.keys.move_to_end(key)
            return False
        self.keys[key] = None
        if len(self.keys) > self.capacity:
            self.keys.popitem(last=False)
        return True


_SEEN = _SeenOnce()


def use_in_graph_build(pattern: AttentionPattern, n: int, device: torch.device, block) -> bool:
    """Whether this call builds the block mask inside the compiled call (module doc): a window
    on CUDA at its first call at this length, or under an outer torch.compile. Measured on an
    H200 (local(512), B1 H16 D128 bf16, `benchmarks/attention_gpu_inline.py`): a call costs
    0.263 / 0.646 / 2.116 ms in-graph vs 0.224 / 0.618 / 2.077 ms with the cached mask at
    n = 4k / 16k / 64k; a first call 0.257 / 0.630 / 2.168 vs 0.436 / 0.974 / 2.478 ms."""
    if device.type != "cuda" or not in_graph_band(pattern):
        return False
    if torch.compiler.is_compiling():
        return True
    return _SEEN.first_call((pattern, n, device, blocks(block)))


@functools.lru_cache(maxsize=64)
def block_mask(
    pattern: AttentionPattern, n: int, device: torch.device, block: int | tuple[int, int] = BLOCK
):
    """The cached FlexAttention ``BlockMask`` of ``pattern`` at length n on ``device``."""
    return pattern.flex_blocks(n, block, device).to_block_mask(pattern.mask_mod(n, device))


@functools.cache
def compiled_flex_attention(device_type: str) -> Callable:
    """FlexAttention compiled for a device type: dynamic shapes on GPUs; static on CPU, where
    torch 2.13's C++ FlexAttention template emits uncompilable code for some masks under
    dynamic shapes (e.g. ``local(3) | strided(5)``), so each new length compiles anew."""
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention, dynamic=device_type != "cpu")


class _FlexForwardReferenceBackward(torch.autograd.Function):
    """FlexAttention forward, exact block-sparse backward (CPU training)."""

    @staticmethod
    def forward(ctx, q, k, v, pattern: AttentionPattern, mask, scale: float, kernel_options):
        detached = (q.detach(), k.detach(), v.detach())  # torch refuses CPU inputs needing grad
        out = compiled_flex_attention(q.device.type)(
            *detached, block_mask=mask, scale=scale, kernel_options=kernel_options
        )
        ctx.save_for_backward(q, k, v, out)
        ctx.pattern, ctx.scale = pattern, scale
        return out

    @staticmethod
    def backward(ctx, dout):
        q, k, v, out = ctx.saved_tensors
        n, device = q.shape[2], q.device
        layout = cached_layout(ctx.pattern, n, reference.BLOCK, device)
        fn = ctx.pattern.fn(n, device)
        _, lse = reference.forward_pass(q, k, v, layout, fn, ctx.scale)
        grads = reference.backward_pass(q, k, v, out, lse, dout, layout, fn, ctx.scale)
        return (*grads, None, None, None, None)


def flex_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    pattern: AttentionPattern,
    scale: float,
    block: int | tuple[int, int] = BLOCK,
    kernel_options: dict | None = None,
) -> Tensor:
    """FlexAttention over the pattern; ``block`` is the BlockMask's (q, kv) block size and
    ``kernel_options`` go to FlexAttention's kernel (tile sizes, stages, warps) as is."""
    if use_in_graph_build(pattern, q.shape[2], q.device, block):
        lo, hi = pattern.lo, pattern.hi
        return compiled_band_attention()(q, k, v, lo, hi, blocks(block), scale, kernel_options)
    mask = block_mask(pattern, q.shape[2], q.device, block)
    needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v))
    if needs_grad and q.device.type == "cpu":
        return _FlexForwardReferenceBackward.apply(q, k, v, pattern, mask, scale, kernel_options)
    if q.device.type == "cpu":
        q, k, v = q.detach(), k.detach(), v.detach()  # torch refuses CPU inputs needing grad
    return compiled_flex_attention(q.device.type)(
        q, k, v, block_mask=mask, scale=scale, kernel_options=kernel_options
    )
