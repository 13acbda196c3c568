"""SynFlow: iterative synaptic flow, data-free.

Tanaka, Kunin, Yamins & Ganguli, "Pruning neural networks without any data by iteratively
conserving synaptic flow", NeurIPS 2020 (arXiv:2006.05467).

The network is linearised: every floating parameter and buffer is replaced by its absolute
value, BatchNorm runs in eval mode, and the input is all ones. R = sum of the output
(= 1^T prod_l |W_l| 1 for a bias-free MLP) and the synaptic saliency of weight w is
|dR/dw * w|. This module computes one such scoring pass on the model as it is (weights already
pruned are zero and carry no flow); the iterative 100-step schedule that makes SynFlow avoid layer
collapse is the algorithm's job (sparsetorch.algorithms.at_init.synflow).

The pass runs in float64 by default: R is a product over layers and overflows float32 on deep
or wide networks. Nothing in the model changes (the linearised tensors are copies).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from sparsetorch.criteria._batches import (
    as_batches,
    by_name,
    canonical_names,
    forward,
    no_side_effects,
    weight_leaves,
)
from sparsetorch.criteria.base import Criterion


def _check_input_shape(input_shape: Sequence[int]) -> tuple[int, ...]:
    shape = tuple(input_shape)
    if not shape or not all(isinstance(d, int) and d > 0 for d in shape):
        raise ValueError(
            f"input_shape must be a non-empty tuple of positive ints (one example, no batch "
            f"dimension), got {input_shape!r}"
        )
    return shape


def synflow_scores(
    model: nn.Module,
    names: Sequence[str],
    input_shape: Sequence[int],
    dtype: torch.dtype = torch.float64,
) -> dict[str, torch.Tensor]:
    """``{name: |dR/dw * w|}`` on the linearised model, as ``dtype`` tensors."""
    shape = _check_input_shape(input_shape)
    if not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating-point dtype, got {dtype}")
    canonical = canonical_names(model, names)  # tied weights: one variable, scored once
    with no_side_effects(model, eval_mode=True):
        leaves = {n: t.abs() for n, t in weight_leaves(model, canonical.values(), dtype).items()}
        leaves = {n: t.detach().requires_grad_(True) for n, t in leaves.items()}
        linear = {
            n: t.detach().abs().to(dtype)
            for n, t in [*model.named_parameters(), *model.named_buffers()]
            if t.is_floating_point() and n not in leaves
        }
        device = next(iter(leaves.values())).device
        x = torch.ones((1, *shape), dtype=dtype, device=device)
        r = forward(model, {**linear, **leaves}, x).sum()
        grads = torch.autograd.grad(r, list(leaves.values()), allow_unused=True)
    scores = {
        n: torch.zeros_like(w) if g is None else (g * w).detach().abs()
        for (n, w), g in zip(leaves.items(), grads)
    }
    if not all(torch.isfinite(s).all() for s in scores.values()):
        raise ValueError(
            f"SynFlow scores overflowed in {dtype} (R = {r.item():.3g}); use dtype=torch.float64 "
            "or a model with smaller initial weights"
        )
    return by_name(scores, canonical)


class SynFlow(Criterion):
    """``CRITERIA["synflow"]``: ONE SynFlow pass (one-shot SynFlow when used by ``st.prune``;
    the iterative method is ``sparsetorch.algorithms.at_init.synflow``). The input shape is
    ``input_shape`` or, when not given, that of ``batch``'s inputs (only their shape is used)."""

    name = "synflow"

    def __init__(
        self, input_shape: Sequence[int] | None = None, dtype: torch.dtype = torch.float64
    ):
        self.input_shape = None if input_shape is None else _check_input_shape(input_shape)
        self.dtype = dtype

    def scores(self, model, names, *, batch=None, loss_fn=None, generator=None):
        shape = self.input_shape
        if shape is None:
            if batch is None:
                raise ValueError(
                    "criterion 'synflow' needs the input shape: SynFlow(input_shape=...) or "
                    "batch=(inputs, targets)"
                )
            shape = tuple(as_batches(batch)[0][0].shape[1:])
        return synflow_scores(model, names, shape, self.dtype)
