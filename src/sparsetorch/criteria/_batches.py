"""The loss of a model on data batches, without side effects: shared by the criteria that
score on data at initialisation (SNIP, GraSP, taylor, gradient) and the data-free one
(SynFlow).

A batch is any batch of ``sparsetorch.batches``: an ``(inputs, targets)`` pair (inputs a
tensor, a tuple of positional inputs or a dict of keyword inputs), a dict of keyword inputs
(attention masks, and labels when the model computes its own loss: Hugging Face models), or a
tensor; outputs may be tensors, ``ModelOutput``s, dicts or tuples. The loss is
``loss_fn(output, targets)`` (``loss_fn(output, batch)`` for a dict or tensor batch), else
cross-entropy against the targets, else the model's own ``loss`` (``batches.loss_of``).

Scoring never changes the model: weights enter as detached leaves through
``torch.func.functional_call``, buffers (BatchNorm running statistics) are cloned so the forward
pass cannot update them, and the global RNG is forked so dropout in train mode does not shift
the training run's random stream.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from sparsetorch._checks import check_not_meta
from sparsetorch.batches import (
    batch_size,
    check_inputs,
    is_pair,
    logits_of,
    loss_of,
    map_logits,
    split_batch,
    to_device,
)
from sparsetorch.batches import cross_entropy as cross_entropy

Batch = Any  # a batch of sparsetorch.batches: (inputs, targets), a dict of inputs, a tensor
LossFn = Callable[[Any, Any], torch.Tensor]


def as_batches(batches: Batch | Iterable[Batch]) -> list[Batch]:
    """Accept one batch or an iterable of them (a list, a DataLoader); check each. One batch is
    a tensor, a mapping or an ``(inputs, targets)`` tuple; a list is always several batches
    (whose items may be pairs given as lists, as a DataLoader yields them)."""
    if isinstance(batches, torch.Tensor | Mapping) or (
        isinstance(batches, tuple) and is_pair(batches)
    ):
        batches = [batches]
    ok = isinstance(batches, Iterable) and not isinstance(batches, str | bytes)
    found = list(batches) if ok else None
    if not found:
        raise ValueError(
            "batches must be one batch ((inputs, targets), a dict of inputs or a tensor) or a "
            "non-empty iterable of them"
        )
    for i, batch in enumerate(found):
        inputs, targets = split_batch(batch, f"batches[{i}]")
        if isinstance(inputs, torch.Tensor) and targets is not None:
            x, y = inputs, targets
            if x.ndim == 0 or y.ndim == 0 or x.shape[0] != y.shape[0] or x.shape[0] == 0:
                raise ValueError(
                    f"batches[{i}]: x {tuple(x.shape)} and y {tuple(y.shape)} must share a "
                    "non-empty first (batch) dimension"
                )
        elif batch_size(batch) == 0:
            raise ValueError(f"batches[{i}] holds no example")
    return [tuple(b) if isinstance(b, list) else b for b in found]


def require_batch(criterion: str, batch: Batch | Iterable[Batch] | None) -> Batch | Iterable[Batch]:
    if batch is None:
        raise ValueError(
            f"criterion {criterion!r} scores on data: pass batch=(inputs, targets), a dict of "
            "model inputs (with labels for a model that computes its loss) or a list of batches"
        )
    return batch


def canonical_names(model: nn.Module, names: Sequence[str]) -> dict[str, str]:
    """``{name: the name named_parameters() lists its parameter under}``. A parameter shared by
    several modules (tied weights) has several names; all map to its first, so it is one
    scoring variable, scored once, with the gradient of all its uses."""
    first: dict[int, str] = {}
    canonical = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        canonical[name] = first.setdefault(id(param), name)
    missing = [n for n in names if n not in canonical]
    if missing:
        raise ValueError(f"model has no parameters {missing}")
    return {n: canonical[n] for n in names}


def by_name(scores: dict[str, torch.Tensor], canonical: dict[str, str]) -> dict[str, torch.Tensor]:
    """Scores keyed by the requested names (tied aliases share their parameter's score)."""
    return {n: scores[c] for n, c in canonical.items()}


def weight_leaves(
    model: nn.Module, names: Iterable[str], dtype: torch.dtype | None = None
) -> dict[str, torch.Tensor]:
    """Detached copies of the named parameters that require grad (the scoring variables): one
    per distinct parameter, keyed by its canonical name (see :func:`canonical_names`)."""
    names = list(names)
    if not names:
        raise ValueError("model has no prunable weights to score")
    params = dict(model.named_parameters())
    unique = dict.fromkeys(canonical_names(model, names).values())
    return {n: params[n].detach().to(dtype or params[n].dtype).requires_grad_(True) for n in unique}


@contextlib.contextmanager
def no_side_effects(model: nn.Module, eval_mode: bool = False) -> Iterator[None]:
    """Fork the RNG (and optionally switch to eval mode); restore both afterwards. Every
    data-based criterion scores under it: a model without data is refused here."""
    check_not_meta(model, "model")
    modes = [(m, m.training) for m in model.modules()]
    devices = sorted({p.device.index or 0 for p in model.parameters() if p.is_cuda})
    try:
        with torch.random.fork_rng(devices=devices):
            if eval_mode:
                model.eval()
            yield
    finally:
        for m, training in modes:
            m.training = training


def _describe(inputs: Any) -> str:
    if isinstance(inputs, torch.Tensor):
        return f"of shape {tuple(inputs.shape)} ({inputs.dtype})"
    if isinstance(inputs, Mapping):
        return f"with keys {list(inputs)}"
    return f"of {len(inputs)} positional inputs"


def forward(model: nn.Module, tensors: dict[str, torch.Tensor], inputs: Any) -> Any:
    """The model's output on ``inputs`` (``batches.call_model``) with ``tensors`` (name ->
    tensor) swapped in and buffers cloned."""
    state = {n: b.clone() for n, b in model.named_buffers()}
    state.update(tensors)
    check_inputs(inputs)
    args, kwargs = (
        ((), dict(inputs))
        if isinstance(inputs, Mapping)
        else (tuple(inputs), {})
        if isinstance(inputs, tuple | list)
        else ((inputs,), {})
    )
    try:
        return functional_call(model, state, args, kwargs)
    except torch.OutOfMemoryError:
        raise
    except (RuntimeError, IndexError) as exc:
        raise ValueError(f"batch input {_describe(inputs)} does not fit the model: {exc}") from exc


def batch_loss(
    model: nn.Module,
    tensors: dict[str, torch.Tensor],
    batch: Batch,
    loss_fn: LossFn | None = None,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Loss of ``model`` (with ``tensors`` swapped in) on one batch; logits divided by
    ``temperature`` (where the loss is computed here: a model's own loss is taken as it is)."""
    device = next(iter(tensors.values())).device
    batch = to_device(batch, device)
    inputs, targets = split_batch(batch)
    output = forward(model, tensors, inputs)
    if temperature != 1.0 and (loss_fn is not None or targets is not None):
        output = map_logits(output, lambda logits: logits / temperature)

    try:
        loss = loss_of(output, batch, loss_fn)
    except (RuntimeError, IndexError) as exc:
        shape = tuple(targets.shape) if targets is not None else "-"
        raise ValueError(
            f"targets of shape {shape} do not fit the model output "
            f"(logits {tuple(logits_of(output).shape)}): {exc}"
        ) from exc
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        raise ValueError(
            f"the loss must be a one-element tensor, got {getattr(loss, 'shape', type(loss))}"
        )
    return loss.reshape(())


def mean_gradient(
    model: nn.Module,
    leaves: dict[str, torch.Tensor],
    batches: list[Batch],
    loss_fn: LossFn | None = None,
    temperature: float = 1.0,
) -> dict[str, torch.Tensor]:
    """Gradient of the loss on the union of ``batches`` (batch losses weighted by size)."""
    sizes = [batch_size(b) for b in batches]
    total = sum(sizes)
    grads = {n: torch.zeros_like(t) for n, t in leaves.items()}
    for batch, size in zip(batches, sizes):
        loss = batch_loss(model, leaves, batch, loss_fn, temperature)
        parts = torch.autograd.grad(loss, list(leaves.values()), allow_unused=True)
        for acc, g in zip(grads.values(), parts):
            if g is not None:
                acc.add_(g, alpha=size / total)
    return grads
