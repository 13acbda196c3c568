"""SNIP: connection sensitivity at initialisation.

Lee, Ajanthan & Torr, "SNIP: Single-shot Network Pruning based on Connection Sensitivity",
ICLR 2019 (arXiv:1810.02340).

Every connection j gets a multiplicative gate c_j (1 at initialisation). Its sensitivity is
|dL/dc_j| = |g_j * w_j|: the loss gradient times the weight, on a mini-batch. The paper divides
by the sum over all connections; that changes no ranking (global or per layer), so the scores
here are the raw |g * w|. With several batches the gradient is the gradient of the loss on their
union (batch losses weighted by batch size), and the absolute value is taken last.

|g * w| is also the first-order Taylor estimate of the loss change when w is removed (Molchanov
et al., ICLR 2017; per weight in Molchanov et al., CVPR 2019): :func:`saliency` is the one
implementation of that score, behind both ``CRITERIA["snip"]`` and ``CRITERIA["taylor"]``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import nn

from sparsetorch.criteria._batches import (
    Batch,
    LossFn,
    as_batches,
    by_name,
    canonical_names,
    mean_gradient,
    no_side_effects,
    require_batch,
    weight_leaves,
)
from sparsetorch.criteria.base import Criterion, score_dtype


def saliency(weight: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """|w * dL/dw| in the criteria's score dtype (float64 stays, anything else float32)."""
    dtype = score_dtype(weight)
    return (weight.detach().to(dtype) * grad.detach().to(dtype)).abs()


def snip_scores(
    model: nn.Module,
    names: Sequence[str],
    batches: Batch | Iterable[Batch],
    loss_fn: LossFn | None = None,
) -> dict[str, torch.Tensor]:
    """``{name: |dL/dw * w|}`` for the named weights, on ``batches`` (one ``(x, y)`` or many),
    float32 for 16-bit weights (:func:`saliency`).

    The model is evaluated in its current mode (train mode: BatchNorm uses batch statistics);
    nothing about it changes (buffers are cloned, the RNG is forked). ``loss_fn(logits, y)``
    defaults to mean cross-entropy.
    """
    batches = as_batches(batches)
    canonical = canonical_names(model, names)  # tied weights: one variable, scored once
    with no_side_effects(model):
        leaves = weight_leaves(model, canonical.values())
        grads = mean_gradient(model, leaves, batches, loss_fn)
    return by_name({n: saliency(leaves[n], grads[n]) for n in leaves}, canonical)


class SNIP(Criterion):
    """``CRITERIA["snip"]``: :func:`snip_scores` on ``batch`` (one pair or a list of pairs)."""

    name = "snip"
    runs_model = True  # forward and backward passes of the model itself

    def scores(self, model, names, *, batch=None, loss_fn=None, generator=None):
        return snip_scores(model, names, require_batch(self.name, batch), loss_fn)
