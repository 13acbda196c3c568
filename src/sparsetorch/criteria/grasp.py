"""GraSP: gradient signal preservation at initialisation.

Wang, Zhang & Grosse, "Picking Winning Tickets Before Training by Preserving Gradient Flow",
ICLR 2020 (arXiv:2002.07376).

Removing a set of weights (a perturbation delta = -theta on them) changes the gradient norm by
Delta ||g||^2 / 2 ~ delta^T H g. The paper scores S(-theta) = -theta * (H g) and removes the
weights with the LARGEST S (Algorithm 1 keeps S < the (1-p) percentile; the official code drops
the top of -theta * Hg): those whose removal reduces gradient flow least, or even increases it.

Sign convention here: sparsetorch scores are "higher = keep", so the GraSP score is
``theta * (H g)`` = -S(-theta). Keeping its top-k is exactly the paper's rule. It is signed: no
absolute value is taken (the magnitude variant is a different method).

H g is a Hessian-vector product by double backward: g is the gradient on the batches (held
fixed), then H g = d(g_fixed . dL/dtheta)/dtheta. The logits are divided by a temperature before
the loss; the official code uses T = 200 (the paper does not discuss it) and so does our default.
A model that computes its own loss (a Hugging Face model given ``labels``) is scored at T = 1,
with a warning: pass ``(inputs, targets)`` pairs or a ``loss_fn`` to apply the temperature.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from sparsetorch._checks import is_real
from sparsetorch.batches import batch_size, split_batch
from sparsetorch.criteria._batches import (
    Batch,
    LossFn,
    as_batches,
    batch_loss,
    by_name,
    canonical_names,
    mean_gradient,
    no_side_effects,
    require_batch,
    weight_leaves,
)
from sparsetorch.criteria.base import Criterion

DEFAULT_TEMPERATURE = 200.0


def hessian_gradient_product(
    model: nn.Module,
    leaves: dict[str, torch.Tensor],
    batches: list[Batch],
    loss_fn: LossFn | None = None,
    temperature: float = 1.0,
) -> dict[str, torch.Tensor]:
    """``H g`` of the loss on the union of ``batches`` w.r.t. ``leaves`` (double backward).

    Attention runs on SDPA's math kernel here: the fused kernels have no double backward."""
    g = mean_gradient(model, leaves, batches, loss_fn, temperature)  # fixed vector
    sizes = [batch_size(b) for b in batches]
    total = sum(sizes)
    hg = {n: torch.zeros_like(t) for n, t in leaves.items()}
    for batch, size in zip(batches, sizes):
        with sdpa_kernel(SDPBackend.MATH):
            loss = batch_loss(model, leaves, batch, loss_fn, temperature)
        parts = torch.autograd.grad(
            loss, list(leaves.values()), create_graph=True, allow_unused=True
        )
        z = sum((g[n] * p).sum() for n, p in zip(leaves, parts) if p is not None)
        if not isinstance(z, torch.Tensor) or not z.requires_grad:
            continue  # the loss is linear in every scored weight: H g = 0
        for acc, h in zip(
            hg.values(), torch.autograd.grad(z, list(leaves.values()), allow_unused=True)
        ):
            if h is not None:
                acc.add_(h, alpha=size / total)
    return hg


def grasp_scores(
    model: nn.Module,
    names: Sequence[str],
    batches: Batch | Iterable[Batch],
    loss_fn: LossFn | None = None,
    temperature: float = DEFAULT_TEMPERATURE,
) -> dict[str, torch.Tensor]:
    """``{name: theta * (H g)}`` (higher = keep) for the named weights on ``batches``.

    H is the Hessian of the loss w.r.t. the named weights only (the prunable set, as in the
    official code), g its gradient. Evaluated in the model's current mode without changing it.
    """
    if not (is_real(temperature) and math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    temperature = float(temperature)
    batches = as_batches(batches)
    if temperature != 1 and loss_fn is None and any(split_batch(b)[1] is None for b in batches):
        warnings.warn(
            f"GraSP temperature {temperature:g} is not applied to batches without targets: the "
            "model computes its own loss from its logits; pass (inputs, targets) pairs or "
            "loss_fn to score at a temperature",
            UserWarning,
            stacklevel=2,
        )
    canonical = canonical_names(model, names)  # tied weights: one variable, scored once
    with no_side_effects(model):
        leaves = weight_leaves(model, canonical.values())
        hg = hessian_gradient_product(model, leaves, batches, loss_fn, float(temperature))
    return by_name({n: leaves[n].detach() * hg[n] for n in leaves}, canonical)


class GraSP(Criterion):
    """``CRITERIA["grasp"]``: :func:`grasp_scores` on ``batch`` (one pair or a list of pairs)."""

    name = "grasp"
    runs_model = True  # forward and backward passes of the model itself

    def __init__(self, temperature: float = DEFAULT_TEMPERATURE) -> None:
        self.temperature = temperature

    def scores(self, model, names, *, batch=None, loss_fn=None, generator=None):
        batch = require_batch(self.name, batch)
        return grasp_scores(model, names, batch, loss_fn, self.temperature)
