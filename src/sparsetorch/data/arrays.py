"""What every data set of your own goes through: inputs and labels as the runner's tensors,
checked, and the validation (and test) splits carved from the training examples.

Inputs: floating point -> float32 as they are; ``uint8`` -> float32 divided by 255 (pixels in
[0, 1]); ``bool`` -> float32 0/1; other integers -> int64 (token ids). Labels: integers >= 0
-> int64, shape ``(N,)`` (one class per example) or ``(N, T)`` (a class per position).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from sparsetorch.data.splits import Dataset, Split


def as_inputs(x: Any, where: str) -> torch.Tensor:
    """``x`` (a tensor or array) as the runner's input tensor (rules in the module doc)."""
    t = _tensor(x, where)
    if t.dtype == torch.uint8:
        return t.float() / 255.0
    if t.dtype == torch.bool:
        return t.float()
    if t.is_floating_point():
        return t.float()
    if t.is_complex():
        raise TypeError(f"{where} must be real numbers, got {t.dtype}")
    return t.long()


def as_labels(y: Any, where: str) -> torch.Tensor:
    """``y`` as int64 class indices >= 0; a TypeError for float labels (the runner trains
    classifiers with cross-entropy)."""
    t = _tensor(y, where)
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise TypeError(
            f"{where} must hold integer class indices (the runner trains with cross-entropy), "
            f"got {t.dtype}"
        )
    t = t.long()
    if t.ndim not in (1, 2):
        raise ValueError(
            f"{where} must have shape (N,) or (N, T) (a class per example or per position), "
            f"got {tuple(t.shape)}"
        )
    if t.numel() and int(t.min()) < 0:
        raise ValueError(f"{where} holds a negative class index ({int(t.min())})")
    return t


def pair(x: Any, y: Any, where: str) -> Split:
    """One split from inputs and labels, checked against each other."""
    xs, ys = as_inputs(x, f"{where} inputs"), as_labels(y, f"{where} labels")
    if xs.ndim < 1 or xs.shape[0] != ys.shape[0]:
        raise ValueError(
            f"{where}: {xs.shape[0] if xs.ndim else 0} inputs but {ys.shape[0]} labels"
        )
    if xs.shape[0] == 0:
        raise ValueError(f"{where} holds no examples")
    return Split(xs, ys)


def carve(split: Split, fraction: float, seed: int, where: str) -> tuple[Split, Split]:
    """``(rest, held_out)``: ``round(fraction * N)`` examples (at least 1) held out by a seeded
    shuffle, as the built-in data sets hold out their validation splits."""
    if isinstance(fraction, bool) or not isinstance(fraction, int | float):
        raise TypeError(f"{where} must be a number in (0, 1), got {fraction!r}")
    if not 0 < fraction < 1:
        raise ValueError(f"{where} must be in (0, 1), got {fraction!r}")
    n = len(split)
    k = max(1, round(fraction * n))
    if n - k < 1:
        raise ValueError(f"{n} example(s) are too few to hold out {where}={fraction}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    held, rest = perm[:k], perm[k:]
    return Split(split.x[rest], split.y[rest]), Split(split.x[held], split.y[held])


def build(
    name: str,
    train: Split,
    test: Split | None,
    val: Split | None,
    *,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    num_classes: int | None = None,
    classes: Sequence[str] = (),
) -> Dataset:
    """A :class:`Dataset` from the splits given. A missing validation split is carved from
    the training examples (``val_fraction``, seed ``seed``, as Fashion-MNIST's); a missing test
    split too, first (``test_fraction``, seed ``seed``; then validation with ``seed + 1``, as
    the digits')."""
    val_seed = seed
    if test is None:
        train, test = carve(train, test_fraction, seed, "test_fraction")
        val_seed = seed + 1
    if val is None:
        train, val = carve(train, val_fraction, val_seed, "val_fraction")
    shape = tuple(train.x.shape[1:])
    for where, split in (("validation", val), ("test", test)):
        if tuple(split.x.shape[1:]) != shape:
            raise ValueError(
                f"{where} inputs have shape {tuple(split.x.shape[1:])} per example, the "
                f"training inputs {shape}"
            )
        if split.x.dtype != train.x.dtype:
            raise ValueError(
                f"{where} inputs are {split.x.dtype}, the training inputs {train.x.dtype}"
            )
        if split.y.shape[1:] != train.y.shape[1:]:
            raise ValueError(
                f"{where} labels have shape {tuple(split.y.shape[1:])} per example, the "
                f"training labels {tuple(train.y.shape[1:])}"
            )
    largest = max(int(s.y.max()) for s in (train, val, test))
    if num_classes is None:
        num_classes = len(classes) if classes else largest + 1
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be an int >= 1, got {num_classes!r}")
    if largest >= num_classes:
        raise ValueError(f"a label is {largest}, but num_classes is {num_classes}")
    return Dataset(name, train, val, test, num_classes, shape, tuple(classes))


def _tensor(value: Any, where: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            raise TypeError(f"{where} is an array of Python objects; expected numbers")
        return torch.from_numpy(np.ascontiguousarray(value))
    try:
        return torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise TypeError(
            f"{where} must be a tensor or an array, got {type(value).__name__}"
        ) from exc
