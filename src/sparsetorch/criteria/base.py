"""The criterion contract: scores only (higher = more important to keep), never masks.

A criterion is a small class with one method::

    scores(model, names, *, batch=None, loss_fn=None, generator=None) -> {name: score tensor}

``names`` are full parameter names (``"fc1.weight"``); each score has its parameter's shape
(the result is a mapping: a dict, or :class:`LazyScores` computed when read). Criteria that
need data (gradient, Taylor/SNIP, GraSP...) take ``batch=``, one batch or a sequence of them,
each a batch of ``sparsetorch.batches`` (``(inputs, targets)``, a dict of keyword inputs, a
tensor), and ``loss_fn(output, targets)`` (default: cross-entropy, or the model's own loss).
Elementwise criteria subclass :class:`ElementwiseCriterion` and implement
``score(weight, grad, generator)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from sparsetorch.criteria._batches import (
    as_batches,
    by_name,
    canonical_names,
    mean_gradient,
    no_side_effects,
    weight_leaves,
)

LossFn = Callable[[Any, Any], torch.Tensor]


class Criterion:
    name: str = "criterion"

    def scores(
        self,
        model: nn.Module,
        names: Sequence[str],
        *,
        batch: Any = None,
        loss_fn: LossFn | None = None,
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def parameters(model: nn.Module, names: Sequence[str]) -> dict[str, nn.Parameter]:
    """{name: parameter}; unknown names raise one ValueError listing them. A tied parameter
    may be named by any of its modules (``named_parameters(remove_duplicate=False)``)."""
    canonical = canonical_names(model, names)
    params = dict(model.named_parameters())
    return {n: params[c] for n, c in canonical.items()}


def gradients(
    model: nn.Module,
    params: dict[str, nn.Parameter],
    batch: Any | None,
    loss_fn: LossFn | None,
    who: str,
) -> dict[str, torch.Tensor]:
    """Gradients of the loss on ``batch`` (one ``(x, y)`` pair or a sequence of them; the
    model is left untouched: no ``.grad``, no BatchNorm statistics, no RNG advance; ``loss_fn``
    defaults to mean cross-entropy), or, without a batch, the ``.grad`` already there (after
    ``backward()``: the dense gradient of the effective weight)."""
    if batch is not None:
        canonical = canonical_names(model, list(params))  # tied weights: one variable
        with no_side_effects(model):
            leaves = weight_leaves(model, canonical.values())
            found = by_name(mean_gradient(model, leaves, as_batches(batch), loss_fn), canonical)
    else:
        found = {n: p.grad for n, p in params.items()}
    missing = [n for n, g in found.items() if g is None]
    if missing:
        raise ValueError(
            f"criterion {who!r} needs gradients, none for {missing}: pass batch=(inputs, "
            "targets) and loss_fn=, or call loss.backward() first"
        )
    return {n: g.detach() for n, g in found.items()}


def score_dtype(t: torch.Tensor) -> torch.dtype:
    """float64 stays float64; everything else is scored in float32."""
    return torch.float64 if t.dtype == torch.float64 else torch.float32


class LazyScores(Mapping[str, torch.Tensor]):
    """``{name: score}`` computed when read, one parameter at a time and afresh on every read:
    a criterion that needs neither data nor randomness (magnitude) never holds the scores of
    the whole model, so ``st.prune`` on a large model holds about one layer's."""

    def __init__(
        self, params: dict[str, torch.Tensor], score: Callable[[torch.Tensor], torch.Tensor]
    ):
        self._params, self._score = params, score

    def __getitem__(self, name: str) -> torch.Tensor:
        return self._score(self._params[name])

    def __iter__(self) -> Iterator[str]:
        return iter(self._params)

    def __len__(self) -> int:
        return len(self._params)


class ElementwiseCriterion(Criterion):
    """A score computed weight by weight from the weight and (if ``needs_grad``) its gradient.
    ``lazy = True`` (a deterministic score of the weight alone: magnitude) returns
    :class:`LazyScores`."""

    needs_grad: bool = False
    lazy: bool = False

    def score(
        self, weight: torch.Tensor, grad: torch.Tensor | None, generator: torch.Generator | None
    ) -> torch.Tensor:
        raise NotImplementedError

    def scores(
        self,
        model: nn.Module,
        names: Sequence[str],
        *,
        batch: Any = None,
        loss_fn: LossFn | None = None,
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        params = parameters(model, names)
        if self.lazy and not self.needs_grad:
            return LazyScores(
                {n: p.detach() for n, p in params.items()},
                lambda w: self.score(w, None, generator).to(score_dtype(w)),
            )
        grads = gradients(model, params, batch, loss_fn, self.name) if self.needs_grad else {}
        return {
            n: self.score(p.detach(), grads.get(n), generator).to(score_dtype(p))
            for n, p in params.items()
        }
