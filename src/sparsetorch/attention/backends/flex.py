"""The flex backend: ``torch.nn.attention.flex_attention``, compiled, with our block layouts.

The ``BlockMask`` is built from the pattern's analytic :class:`BlockLayout` (both the key side
and the transposed query side), never by ``create_block_mask``'s n x n evaluation, and cached
per (pattern, n, device, block). ``flex_attention`` is compiled once with dynamic shapes, so a
new sequence length does not recompile (a new pattern structure does).

On CUDA a finite band (``local(w)``, ``band(lo, hi)``) builds nothing on the host: its first
call at a length is a compiled call that computes the block lists itself, as torch ops on the
symbolic length (:mod:`.flex_band`, one small extra kernel), and returns them; they become the
cached ``BlockMask`` of that length (views, nothing copied), which later calls use. Under
``torch.inference_mode`` those lists are inference tensors: a later call that needs gradients
builds them again. While an outer ``torch.compile`` traces, every call builds in the graph (no
Python state is read or written then); compiling a whole model that uses this backend is not
tested.

On CPU, torch (2.11–2.13) compiles FlexAttention for inference only: its backward raises
NotImplementedError. With gradients on CPU this backend therefore runs FlexAttention forward
and the reference backend's exact block-sparse backward (which recomputes the log-sum-exp).
On CUDA, FlexAttention's own compiled backward runs, for every pattern (its block lists must
be row-major: see :class:`~sparsetorch.attention.layout.FlexBlocks`).

Non-finite keys and values reach only the rows allowed to attend them (:mod:`.nonfinite`). On
CUDA the compiled call itself cleans them, adds ``nonfinite.POISON`` to their scores and marks
the rows whose log-sum-exp shows it (:func:`.nonfinite.contained_flex`): no host
synchronisation. On the CPU,
whose compiled FlexAttention has no log-sum-exp output, the call runs on cleaned inputs and,
when a position was bad, the reference backend's tiles mark the rows.
"""

from __future__ import annotations

import functools
import warnings
from collections import OrderedDict
from collections.abc import Callable

import torch
from torch import Tensor

from sparsetorch._warnings import user_stacklevel
from sparsetorch.attention.backends import nonfinite, reference
from sparsetorch.attention.backends.flex_band import compiled_band_attention
from sparsetorch.attention.bands import Band
from sparsetorch.attention.layout import block_mask_from_flat, blocks
from sparsetorch.attention.pattern import AttentionPattern, cached_layout

BLOCK = 128  # FlexAttention's default sparse block size


def in_graph_band(pattern: AttentionPattern) -> bool:
    """A finite, non-empty band (local(w), band(lo, hi)): on CUDA its block lists are built
    in the compiled call of its first call at a length (:mod:`.flex_band`), never on the host,
    and then cached."""
    return (
        isinstance(pattern, Band)
        and pattern.lo is not None
        and pattern.hi is not None
        and pattern.lo <= pattern.hi
    )


IN_GRAPH_DEVICES = {"cuda"}  # device types whose windows build their lists in the graph


class _MaskCache:
    """BlockMasks per (pattern, n, device, block); past ``capacity`` the least recently used
    is dropped."""

    def __init__(self, capacity: int = 64) -> None:
        self.masks: OrderedDict = OrderedDict()
        self.capacity = capacity

    def get(self, key):
        mask = self.masks.get(key)
        if mask is not None:
            self.masks.move_to_end(key)
        return mask

    def put(self, key, mask) -> None:
        self.masks[key] = mask
        self.masks.move_to_end(key)
        if len(self.masks) > self.capacity:
            self.masks.popitem(last=False)

    def __len__(self) -> int:
        return len(self.masks)


_MASKS = _MaskCache()


def clear_block_masks() -> None:
    """Forget every cached BlockMask (the next call at each length builds again)."""
    _MASKS.masks.clear()


def _key(pattern: AttentionPattern, n: int, device: torch.device, block) -> tuple:
    return (pattern, n, device, blocks(block))


def block_mask(
    pattern: AttentionPattern, n: int, device: torch.device, block: int | tuple[int, int] = BLOCK
):
    """The cached FlexAttention ``BlockMask`` of ``pattern`` at length n on ``device``, built
    on the host when there is none."""
    key = _key(pattern, n, device, block)
    mask = _MASKS.get(key)
    return mask if mask is not None else _host_build(key)


def _host_build(key: tuple):
    """Build the key's mask on the host and cache it. Outside inference mode: a mask first
    needed under ``torch.inference_mode`` may later serve training, which saves its tensors
    for backward."""
    pattern, n, device, block = key
    with torch.inference_mode(False):
        mask = pattern.flex_blocks(n, block, device).to_block_mask(pattern.mask_mod(n, device))
    if not torch.compiler.is_compiling():  # a mask built while tracing holds traced tensors
        _MASKS.put(key, mask)
    return mask


def _usable(mask, needs_grad: bool) -> bool:
    """A cached mask serves this call (one made of inference tensors cannot be saved for a
    backward pass)."""
    return mask is not None and not (needs_grad and mask.kv_num_blocks.is_inference())


@functools.cache
def compiled_flex_attention(device_type: str) -> Callable:
    """:func:`.nonfinite.contained_flex` compiled for a device type: dynamic shapes on GPUs; static on CPU,
    where torch 2.13's C++ FlexAttention template emits uncompilable code for some masks under
    dynamic shapes (e.g. ``local(3) | strided(5)``), so each new length compiles anew."""
    return torch.compile(nonfinite.contained_flex, dynamic=device_type != "cpu")


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
        _, lse, _ = reference.forward_pass(q, k, v, layout, fn, ctx.scale)
        grads = reference.backward_pass(q, k, v, out, lse, dout, layout, fn, ctx.scale)
        return (*grads, None, None, None, None)


CPU_DTYPES = (torch.float32, torch.float16, torch.bfloat16)  # Inductor's CPU FlexAttention


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
    if q.device.type != "cpu":  # the compiled calls contain non-finite entries themselves
        return _flex_attention(q, k, v, pattern, scale, block, kernel_options)
    if q.dtype not in CPU_DTYPES:
        raise TypeError(
            f"FlexAttention on the CPU takes {', '.join(map(str, CPU_DTYPES))}, got {q.dtype}; "
            "use backend='reference' (exact in float64) or 'dense'"
        )
    return _cpu_flex_attention(q, k, v, pattern, scale, block, kernel_options)


@torch.compiler.disable(
    reason="the flex attention backend on the CPU runs eagerly (its own compiled "
    "FlexAttention call, a containment that reads whether any position is bad, the "
    "reference's backward); under torch.compile(fullgraph=True) on the CPU use "
    "backend='auto' or 'dense'"
)
def _cpu_flex_attention(q, k, v, pattern: AttentionPattern, scale: float, block, kernel_options):
    """:func:`flex_attention` on the CPU: a graph break inside an outer ``torch.compile``,
    whose tracing of these data-dependent steps failed in Inductor (torch 2.13). Compiled
    statically, once per input shape, pattern and grad mode, up to Dynamo's recompile limit;
    past it the reference backend runs instead (exact, memory proportional to the pattern),
    where Dynamo would run torch's unfused FlexAttention (an n x n score matrix)."""
    if not _cpu_compiles(q, k, v, pattern, block, kernel_options):
        n = q.shape[2]
        layout = cached_layout(pattern, n, reference.BLOCK, q.device)
        return reference.reference_attention(q, k, v, layout, pattern.fn(n, q.device), scale)
    k, v, bad = nonfinite.split(k, v)
    out = _flex_attention(q, k, v, pattern, scale, block, kernel_options)
    if bad is not None:  # some position was bad (known on the CPU without a synchronisation)
        n = q.shape[2]
        layout = cached_layout(pattern, n, reference.BLOCK, q.device)
        out = nonfinite.poison(out, reference.rows_seeing(layout, pattern.fn(n, q.device), bad))
    return out


_CPU_COMPILED: set = set()  # what the CPU's static compiles were made for


def _cpu_compiles(q, k, v, pattern, block, kernel_options) -> bool:
    """Whether this CPU call may run the compiled FlexAttention: its key (shapes, dtype,
    pattern, block, options, grad mode; an over-count of Dynamo's recompiles) was compiled,
    or a compile is left under ``torch._dynamo.config.recompile_limit`` (a warning, once,
    when none is)."""
    key = (
        tuple(q.shape), tuple(k.shape), tuple(v.shape), q.dtype, pattern, block,
        repr(kernel_options), torch.is_grad_enabled(),
    )  # fmt: skip
    if key in _CPU_COMPILED:
        return True
    if len(_CPU_COMPILED) < torch._dynamo.config.recompile_limit:
        _CPU_COMPILED.add(key)
        return True
    warnings.warn(
        f"the flex backend on the CPU has compiled for {len(_CPU_COMPILED)} input shapes, "
        "patterns or grad modes (torch's recompile limit; it compiles statically there): "
        "new ones run on the reference backend (exact, memory proportional to the pattern)",
        UserWarning,
        stacklevel=user_stacklevel(),
    )
    return False


def _flex_attention(q, k, v, pattern: AttentionPattern, scale: float, block, kernel_options):
    n, device = q.shape[2], q.device
    needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v))
    window = device.type in IN_GRAPH_DEVICES and in_graph_band(pattern)
    if window and torch.compiler.is_compiling():  # traced into an outer graph: no Python state
        return _in_graph(q, k, v, pattern, scale, block, kernel_options)[0]
    key = _key(pattern, n, device, block)
    mask = _MASKS.get(key)  # one lookup per call
    if window and not _usable(mask, needs_grad):
        out, flat = _in_graph(q, k, v, pattern, scale, block, kernel_options)
        _MASKS.put(key, block_mask_from_flat(n, key[3], flat, pattern.mask_mod(n, device)))
        return out
    if mask is None:
        mask = _host_build(key)
    if needs_grad and device.type == "cpu":
        return _FlexForwardReferenceBackward.apply(q, k, v, pattern, mask, scale, kernel_options)
    if device.type == "cpu":
        q, k, v = q.detach(), k.detach(), v.detach()  # torch refuses CPU inputs needing grad
    k, v, bias = _cleaned_outside_graph(k, v)
    return compiled_flex_attention(device.type)(
        q, k, v, block_mask=mask, scale=scale, kernel_options=kernel_options, bias=bias
    )


def _cleaned_outside_graph(k: Tensor, v: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
    """On CUDA, k and v cleaned of non-finite entries and their score bias, made before the
    compiled call so the bias enters its graph as an input (``nonfinite.split_with_bias``);
    on the CPU unchanged and no bias (the caller contains them there)."""
    if k.device.type == "cpu":
        return k, v, None
    return nonfinite.split_with_bias(k, v)


def _in_graph(q, k, v, pattern: Band, scale: float, block, kernel_options):
    """(output, flat block lists): the window's call that builds its lists in the graph."""
    lo, hi = pattern.lo, pattern.hi
    k, v, bias = _cleaned_outside_graph(k, v)
    return compiled_band_attention()(q, k, v, lo, hi, blocks(block), scale, kernel_options, bias)
