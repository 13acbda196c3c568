"""Attention backends by name. Each computes softmax attention restricted to a pattern, and
all agree with masked dense attention (rows without keys give zeros).

==============  ===============================================================================
``reference``   exact block-sparse attention in pure PyTorch, any device, memory ∝ the pattern
``flex``        ``torch.nn.attention.flex_attention`` compiled, with our analytic block masks
``dense``       ``scaled_dot_product_attention`` with the n x n mask (the baseline)
``auto``        picks one by device, length and density (:func:`choose`), from measurements
==============  ===============================================================================
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from sparsetorch._registry import Registry
from sparsetorch.attention.backends import flex
from sparsetorch.attention.backends.dense import dense_attention
from sparsetorch.attention.backends.flex import flex_attention
from sparsetorch.attention.backends.reference import BLOCK, reference_attention
from sparsetorch.attention.pattern import AttentionPattern, cached_layout


class Backend:
    name = ""

    def __call__(self, q: Tensor, k: Tensor, v: Tensor, pattern: AttentionPattern, scale: float):
        raise NotImplementedError


BACKENDS: Registry[Backend] = Registry("attention backend")


@BACKENDS.register("reference")
class Reference(Backend):
    name = "reference"

    def __call__(self, q, k, v, pattern, scale):
        n, device = q.shape[2], q.device
        layout = cached_layout(pattern, n, BLOCK, device)
        return reference_attention(q, k, v, layout, pattern.fn(n, device), scale)


@BACKENDS.register("flex")
class Flex(Backend):
    name = "flex"

    def __call__(self, q, k, v, pattern, scale):
        return flex_attention(q, k, v, pattern, scale)


@BACKENDS.register("dense")
class Dense(Backend):
    name = "dense"

    def __call__(self, q, k, v, pattern, scale):
        return dense_attention(q, k, v, pattern, scale)


# The auto choice (docs/benchmarks.md, "Attention"). Sparse backends pay per computed block,
# so what decides is the fraction of blocks a pattern needs (its block density), not its
# element density: strided(k) touches every block although it keeps 1/k of the pairs.
# CPU, from benchmarks/attention_cpu.py (local(64), H=4, D=64, one thread): a computed block
# costs the reference backend about 4-5x what it costs SDPA and FlexAttention about 4x, and
# at n=1k all are within 1.2x; so sparse from n=2048 when at most 1/5 of the blocks are needed.
# CUDA, from the H100 figures (flex 1.9x over dense flash at 4k with w=512, i.e. 1/4
# of the blocks); re-tune with benchmarks/attention_gpu.py.
MIN_SPARSE_N = {"cpu": 2048, "cuda": 2048}
MAX_BLOCK_DENSITY = {"cpu": 0.2, "cuda": 0.5}


def choose(pattern: AttentionPattern, n: int, device: torch.device, requires_grad: bool) -> str:
    """The backend ``auto`` runs for this pattern, length, device and need of gradients."""
    kind = "cuda" if device.type == "cuda" else "cpu"
    sparse = "flex" if kind == "cuda" or not requires_grad else "reference"
    if n < MIN_SPARSE_N[kind]:
        return "dense"
    block = flex.BLOCK if sparse == "flex" else BLOCK
    density = _block_density(pattern, n, block)  # on the host: nothing launched on a GPU
    return sparse if density <= MAX_BLOCK_DENSITY[kind] else "dense"


@functools.lru_cache(maxsize=256)
def _block_density(pattern: AttentionPattern, n: int, block: int) -> float:
    return pattern.block_density(n, block)


@BACKENDS.register("auto")
class Auto(Backend):
    name = "auto"

    def __call__(self, q, k, v, pattern, scale):
        grad = torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v))
        name = choose(pattern, q.shape[2], q.device, grad)
        return BACKENDS.build(name)(q, k, v, pattern, scale)


__all__ = ["BACKENDS", "Auto", "Backend", "Dense", "Flex", "Reference", "choose"]
