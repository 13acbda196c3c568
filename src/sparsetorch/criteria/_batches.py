"""The loss of a model on data batches, without side effects: shared by the criteria that
score on data at initialisation (SNIP, GraSP) and the data-free one (SynFlow).

Scoring never changes the model: weights enter as detached leaves through
``torch.func.functional_call``, buffers (BatchNorm running statistics) are cloned so the forward
pass cannot update them, and the global RNG is forked so dropout in train mode does not shift
the training run's random stream.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from sparsetorch._checks import check_not_meta

Batch = tuple[torch.Tensor, torch.Tensor]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy for classifiers ``(N, C)`` and sequence models ``(N, T, V)``."""
    return F.cross_entropy(logits.flatten(0, -2), y.flatten())


def as_batches(batches: Batch | Iterable[Batch]) -> list[Batch]:
    """Accept one ``(x, y)`` pair or an iterable of them (a list, a DataLoader); check each."""
    if isinstance(batches, tuple) and len(batches) == 2 and isinstance(batches[0], torch.Tensor):
        batches = [batches]
    ok = isinstance(batches, Iterable) and not isinstance(batches, torch.Tensor | str)
    found = [tuple(b) if isinstance(b, list) else b for b in batches] if ok else None
    if not found:
        raise ValueError("batches must be an (x, y) pair or a non-empty iterable of them")
    for i, batch in enumerate(found):
        if (
            not isinstance(batch, tuple | list)
            or len(batch) != 2
            or not all(isinstance(t, torch.Tensor) for t in batch)
        ):
            raise TypeError(f"batches[{i}] must be an (x, y) pair of tensors")
        x, y = batch
        if x.ndim == 0 or y.ndim == 0 or x.shape[0] != y.shape[0] or x.shape[0] == 0:
            raise ValueError(
                f"batches[{i}]: x {tuple(x.shape)} and y {tuple(y.shape)} must share a "
                "non-empty first (batch) dimension"
            )
    return [(x, y) for x, y in found]


def require_batch(criterion: str, batch: Batch | Iterable[Batch] | None) -> Batch | Iterable[Batch]:
    if batch is None:
        raise ValueError(
            f"criterion {criterion!r} scores on data: pass batch=(inputs, targets) (or a list "
            "of them)"
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


def forward(model: nn.Module, tensors: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """``model(x)`` with ``tensors`` (name -> tensor) swapped in and buffers cloned."""
    state = {n: b.clone() for n, b in model.named_buffers()}
    state.update(tensors)
    try:
        return functional_call(model, state, (x,))
    except torch.OutOfMemoryError:
        raise
    except (RuntimeError, IndexError) as exc:
        raise ValueError(
            f"batch x of shape {tuple(x.shape)} ({x.dtype}) does not fit the model: {exc}"
        ) from exc


def batch_loss(
    model: nn.Module,
    tensors: dict[str, torch.Tensor],
    batch: Batch,
    loss_fn: LossFn | None = None,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Loss of ``model`` (with ``tensors`` swapped in) on one batch; logits divided by
    ``temperature``."""
    device = next(iter(tensors.values())).device
    x, y = (t.to(device) for t in batch)
    logits = forward(model, tensors, x)
    try:
        return (loss_fn or cross_entropy)(logits / temperature, y)
    except (RuntimeError, IndexError) as exc:
        raise ValueError(
            f"targets y of shape {tuple(y.shape)} ({y.dtype}) do not fit the model output of "
            f"shape {tuple(logits.shape)}: {exc}"
        ) from exc


def mean_gradient(
    model: nn.Module,
    leaves: dict[str, torch.Tensor],
    batches: list[Batch],
    loss_fn: LossFn | None = None,
    temperature: float = 1.0,
) -> dict[str, torch.Tensor]:
    """Gradient of the loss on the union of ``batches`` (batch losses weighted by size)."""
    total = sum(x.shape[0] for x, _ in batches)
    grads = {n: torch.zeros_like(t) for n, t in leaves.items()}
    for batch in batches:
        loss = batch_loss(model, leaves, batch, loss_fn, temperature)
        parts = torch.autograd.grad(loss, list(leaves.values()), allow_unused=True)
        for acc, g in zip(grads.values(), parts):
            if g is not None:
                acc.add_(g, alpha=batch[0].shape[0] / total)
    return grads
