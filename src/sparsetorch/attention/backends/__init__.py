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

import torch
from torch import Tensor

from sparsetorch._registry import Registry
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


# Thresholds of the auto choice (docs/benchmarks.md, "Attention"). CPU, from
# benchmarks/attention_cpu.py with local(64): at n=1k dense is as fast as flex and faster than
# reference (with gradients), at 4k the sparse backends win 2-5x. CUDA, from the H100
# figures (flex 1.9x over dense flash at 4k); re-tune with benchmarks/attention_gpu.py.
CPU_MIN_SPARSE_N = 2048
CUDA_MIN_SPARSE_N = 2048
MAX_SPARSE_DENSITY = 0.5  # causal (density just above 1/2) stays dense


def choose(pattern: AttentionPattern, n: int, device: torch.device, requires_grad: bool) -> str:
    """The backend ``auto`` runs for this pattern, length, device and need of gradients."""
    if device.type == "cuda":
        sparse = n >= CUDA_MIN_SPARSE_N and pattern.density(n) <= MAX_SPARSE_DENSITY
        return "flex" if sparse else "dense"
    sparse = n >= CPU_MIN_SPARSE_N and pattern.density(n) <= MAX_SPARSE_DENSITY
    if not sparse:
        return "dense"
    return "reference" if requires_grad else "flex"


@BACKENDS.register("auto")
class Auto(Backend):
    name = "auto"

    def __call__(self, q, k, v, pattern, scale):
        grad = torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v))
        name = choose(pattern, q.shape[2], q.device, grad)
        return BACKENDS.build(name)(q, k, v, pattern, scale)


__all__ = ["BACKENDS", "Auto", "Backend", "Dense", "Flex", "Reference", "choose"]
