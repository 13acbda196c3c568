"""What a layer's inputs on the calibration data tell each method, collected by forward hooks.

A layer's input ``X`` is seen as ``(tokens, in)``: every leading dim is a token dim, and padded
tokens (see ``calibration``) are left out. Sums are kept in float32 (float64 for a float64
weight), in the order the batches come, so that the same data gives the same bits.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from sparsetorch.post_training.layers import Layer


def stats_dtype(weight: torch.Tensor) -> torch.dtype:
    return torch.float64 if weight.dtype == torch.float64 else torch.float32


class InputStatistics:
    """Base: counts the tokens seen. Subclasses add what their method needs."""

    def __init__(self, features: int, device: torch.device, dtype: torch.dtype) -> None:
        self.features, self.device, self.dtype = features, device, dtype
        self.tokens = 0

    def add(self, x: torch.Tensor) -> None:  # x: (tokens, in)
        self.tokens += x.shape[0]


class SquaredNorms(InputStatistics):
    """``||X_j||_2^2`` per input feature j (Wanda)."""

    def __init__(self, features: int, device: torch.device, dtype: torch.dtype) -> None:
        super().__init__(features, device, dtype)
        self.sum = torch.zeros(features, device=device, dtype=dtype)  # (in,)

    def add(self, x: torch.Tensor) -> None:
        super().add(x)
        self.sum += x.square().sum(0)

    def norms(self) -> torch.Tensor:
        return self.sum.sqrt()  # (in,)


class Hessian(InputStatistics):
    """``H = 2 X^T X / tokens``, the Hessian of the layer-wise squared error (SparseGPT), kept
    as a running mean (scaled by ``seen / tokens`` before each batch, whose inputs enter
    scaled by ``sqrt(2 / tokens)``): the raw sum X^T X overflows float32 once max x² times
    the token count passes 3.4e38, long before H itself would."""

    def __init__(self, features: int, device: torch.device, dtype: torch.dtype) -> None:
        super().__init__(features, device, dtype)
        self.h = torch.zeros(features, features, device=device, dtype=dtype)  # (in, in)

    def add(self, x: torch.Tensor) -> None:
        seen = self.tokens
        super().add(x)
        if self.tokens == 0:
            return
        self.h.mul_(seen / self.tokens)
        x = x * math.sqrt(2.0 / self.tokens)
        self.h.addmm_(x.t(), x)

    def hessian(self) -> torch.Tensor:
        return self.h  # (in, in)


StatsFactory = Callable[[int, torch.device, torch.dtype], InputStatistics]


class Recorder:
    """Forward hooks that feed every layer's inputs to its statistics while active."""

    def __init__(self, layers: Sequence[Layer], factory: StatsFactory) -> None:
        self.layers = list(layers)
        self.stats = {}
        for layer in self.layers:
            weight = layer.weight
            self.stats[layer.fqn] = factory(
                layer.rows().shape[1], weight.device, stats_dtype(weight)
            )
        self.tokens: torch.Tensor | None = None  # the current batch's (B, T) token mask
        self._handles: list[Any] = []

    def _hook(self, layer: Layer) -> Callable[..., None]:
        stats = self.stats[layer.fqn]

        def record(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any):
            x = args[0] if args else kwargs["input"]
            if self.tokens is not None and tuple(x.shape[:-1]) == tuple(self.tokens.shape):
                x = x[self.tokens]  # (real tokens, in)
            stats.add(
                x.detach().reshape(-1, x.shape[-1]).to(device=stats.device, dtype=stats.dtype)
            )

        return record

    def __enter__(self) -> Recorder:
        for layer in self.layers:
            self._handles.append(
                layer.module.register_forward_hook(self._hook(layer), with_kwargs=True)
            )
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
