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

The input is built from ``input_shape`` (all ones) or from a batch's inputs (a tensor, a tuple
of positional inputs or a dict of keyword inputs; its first example): floating tensors and
entries named ``*mask`` (attention masks: every position present) become ones, integer ones
(token ids) stay as they are. An ``nn.Embedding`` is
linearised as a lookup of every token at once, the all-ones input of its one-hot form: its
output at every position is the column sum of ``|E|``, so every row gets flow, not only the
rows of the tokens in the batch. R is the sum of the output's logits (``batches.logits_of``:
a tensor, a ``ModelOutput``'s ``logits``, ...).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from sparsetorch._warnings import user_stacklevel
from sparsetorch.batches import check_inputs, logits_of, split_batch, to_device
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


def linear_inputs(inputs: Any, dtype: torch.dtype) -> Any:
    """SynFlow's input from a batch's inputs: its first example, floating tensors as ones of
    ``dtype``, entries named ``*mask`` (attention masks) as ones (every position present),
    other tensors (token ids) and values as they are."""
    if isinstance(inputs, torch.Tensor):
        first = inputs[:1] if inputs.dim() else inputs
        return torch.ones_like(first, dtype=dtype) if first.is_floating_point() else first
    if isinstance(inputs, Mapping):
        return {
            k: torch.ones_like(linear_inputs(v, dtype))
            if k.endswith("mask") and isinstance(v, torch.Tensor)
            else linear_inputs(v, dtype)
            for k, v in inputs.items()
        }
    if isinstance(inputs, tuple | list):
        return type(inputs)(linear_inputs(v, dtype) for v in inputs)
    return inputs


def _all_tokens_pre(module: nn.Module, args: tuple) -> tuple | None:
    # indices given as floats (an all-ones input_shape): any valid index, the output is replaced
    if args and isinstance(args[0], torch.Tensor) and args[0].is_floating_point():
        return (torch.zeros(args[0].shape, dtype=torch.long, device=args[0].device), *args[1:])
    return None


def _all_tokens(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
    # the one-hot input of every token at once: 1^T |E| at every position
    return module.weight.sum(0).expand(output.shape)


@contextlib.contextmanager
def _embeddings_see_every_token(model: nn.Module) -> Iterator[None]:
    handles = []
    for module in model.modules():
        if isinstance(module, nn.Embedding):
            handles.append(module.register_forward_pre_hook(_all_tokens_pre))
            handles.append(module.register_forward_hook(_all_tokens))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def synflow_scores(
    model: nn.Module,
    names: Sequence[str],
    input_shape: Sequence[int] | None = None,
    dtype: torch.dtype = torch.float64,
    inputs: Any = None,
) -> dict[str, torch.Tensor]:
    """``{name: |dR/dw * w|}`` on the linearised model, as ``dtype`` tensors. The input is all
    ones of ``(1, *input_shape)``, or built from ``inputs`` (see the module docstring)."""
    if (input_shape is None) == (inputs is None):
        raise ValueError("synflow_scores needs input_shape or inputs (one of them)")
    if input_shape is not None:
        shape = _check_input_shape(input_shape)
    else:
        check_inputs(inputs)
    if not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating-point dtype, got {dtype}")
    canonical = canonical_names(model, names)  # tied weights: one variable, scored once
    with no_side_effects(model, eval_mode=True), _embeddings_see_every_token(model):
        leaves = {n: t.abs() for n, t in weight_leaves(model, canonical.values(), dtype).items()}
        leaves = {n: t.detach().requires_grad_(True) for n, t in leaves.items()}
        linear = {
            n: t.detach().abs().to(dtype)
            for n, t in [*model.named_parameters(), *model.named_buffers()]
            if t.is_floating_point() and n not in leaves
        }
        device = next(iter(leaves.values())).device
        if input_shape is not None:
            x = torch.ones((1, *shape), dtype=dtype, device=device)
        else:
            x = linear_inputs(to_device(inputs, device), dtype)
        r = logits_of(forward(model, {**linear, **leaves}, x)).sum()
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


FLOWLESS = 1e-9  # a layer's score total below this fraction of the largest: no flow reached it


def flowless_layers(scores: Mapping[str, torch.Tensor]) -> list[str]:
    """The layers whose SynFlow scores sum to less than ``FLOWLESS`` of the largest layer's
    total. Synaptic flow is conserved through a chain of layers (each layer's scores sum to
    R), so such a layer's scores are rounding noise, not a ranking."""
    totals = {name: float(score.sum()) for name, score in scores.items()}
    top = max(totals.values(), default=0.0)
    return [name for name, total in totals.items() if top > 0 and total < FLOWLESS * top]


def warn_flowless(scores: Mapping[str, torch.Tensor]) -> None:
    """A warning naming the :func:`flowless_layers`, if any, at the user's line."""
    found = flowless_layers(scores)
    if found:
        warnings.warn(
            f"synflow: no synaptic flow reaches {found} (their scores sum to less than "
            f"{FLOWLESS:g} of the largest layer's): their masks would be chosen by rounding "
            "noise. Attention's query and key projections are such layers: with every "
            "position's input identical, attention is uniform whatever they hold. Exclude "
            "them (exclude=[...]) or score them with data (criterion 'snip' or 'grasp')",
            UserWarning,
            stacklevel=user_stacklevel(),
        )


class SynFlow(Criterion):
    """``CRITERIA["synflow"]``: ONE SynFlow pass (one-shot SynFlow when used by ``st.prune``;
    the iterative method is ``sparsetorch.algorithms.at_init.synflow``). The input is all ones
    of ``input_shape`` or, when not given, built from the first batch's inputs (their first
    example; see the module docstring)."""

    name = "synflow"
    runs_model = True  # forward and backward passes of the model itself

    def __init__(
        self, input_shape: Sequence[int] | None = None, dtype: torch.dtype = torch.float64
    ):
        self.input_shape = None if input_shape is None else _check_input_shape(input_shape)
        self.dtype = dtype

    def scores(self, model, names, *, batch=None, loss_fn=None, generator=None):
        if self.input_shape is not None:
            scores = synflow_scores(model, names, self.input_shape, self.dtype)
            warn_flowless(scores)
            return scores
        if batch is None:
            raise ValueError(
                "criterion 'synflow' needs the input shape: SynFlow(input_shape=...) or batch= "
                "(a batch whose inputs show the input's form)"
            )
        inputs, _ = split_batch(as_batches(batch)[0])
        scores = synflow_scores(model, names, dtype=self.dtype, inputs=inputs)
        warn_flowless(scores)
        return scores
