"""Any PyTorch data as a sparsetorch :class:`Dataset`: ``as_dataset(data)``.

``data`` is one source, or a mapping ``{"train": ..., "test": ..., "val": ...}`` of them
("train" required; a missing split is carved from the training examples by a seeded shuffle,
test first). A source is

* an ``(x, y)`` pair of tensors or arrays (the first dimension indexes examples),
* a ``torch.utils.data.TensorDataset`` of two tensors,
* a ``torch.utils.data.DataLoader`` yielding ``(x, y)`` batches,
* any ``torch.utils.data.Dataset`` (map-style or iterable) yielding ``(x, y)`` examples.

A source is read once, into tensors in memory (the runner's seeded, resumable data order
indexes tensors); a DataLoader's batch size and order do not matter, its random transforms are
applied once. Inputs and labels are converted by ``sparsetorch.data.arrays``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch.utils.data import DataLoader, IterableDataset, TensorDataset
from torch.utils.data import Dataset as TorchDataset

from sparsetorch.data.arrays import build, pair
from sparsetorch.data.splits import Dataset, Split

SPLIT_KEYS = ("train", "val", "test")


def is_source(data: Any) -> bool:
    """True for what :func:`as_dataset` reads (besides a sparsetorch Dataset)."""
    if isinstance(data, Mapping):
        return "train" in data
    return _is_pair(data) or isinstance(data, TorchDataset | DataLoader)


def as_dataset(
    data: Any,
    name: str = "custom",
    *,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    num_classes: int | None = None,
) -> Dataset:
    """``data`` (see the module doc) as a :class:`Dataset` named ``name``; a sparsetorch
    ``Dataset`` is returned as it is."""
    if isinstance(data, Dataset):
        return data
    if isinstance(data, Mapping):
        unknown = sorted(str(k) for k in data if k not in SPLIT_KEYS)
        if unknown or "train" not in data:
            raise ValueError(
                f"a mapping of splits needs the key 'train' (and optionally 'val', 'test'), "
                f"got {sorted(map(str, data))}"
            )
        splits = {key: read_split(data[key], key) for key in SPLIT_KEYS if key in data}
    else:
        splits = {"train": read_split(data, "data")}
    return build(
        name,
        splits["train"],
        splits.get("test"),
        splits.get("val"),
        seed=seed,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        num_classes=num_classes,
    )


def read_split(source: Any, where: str) -> Split:
    """One source read into a :class:`Split`."""
    if _is_pair(source):
        return pair(source[0], source[1], where)
    if isinstance(source, TensorDataset):
        if len(source.tensors) != 2:
            raise ValueError(
                f"{where}: a TensorDataset of (inputs, labels), got {len(source.tensors)} tensors"
            )
        return pair(source.tensors[0], source.tensors[1], where)
    if isinstance(source, DataLoader):
        xs, ys = _columns(source, where, batched=True)
        return pair(torch.cat(xs), torch.cat(ys), where)
    if isinstance(source, IterableDataset):
        xs, ys = _columns(source, where, batched=False)
        return pair(torch.stack(xs), torch.stack(ys), where)
    if isinstance(source, TorchDataset):
        if not hasattr(source, "__len__"):
            raise TypeError(f"{where}: a map-style Dataset must define __len__")
        xs, ys = _columns((source[i] for i in range(len(source))), where, batched=False)
        return pair(torch.stack(xs), torch.stack(ys), where)
    raise TypeError(
        f"{where} must be an (inputs, labels) pair of tensors, a torch Dataset or a "
        f"DataLoader, got {type(source).__name__}"
    )


def _is_pair(value: Any) -> bool:
    return (
        isinstance(value, tuple | list)
        and len(value) == 2
        and all(hasattr(v, "shape") for v in value)
    )


def _columns(
    items: Iterable[Any], where: str, batched: bool
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    xs, ys = [], []
    for i, item in enumerate(items):
        if not (isinstance(item, tuple | list) and len(item) == 2):
            what = "batch" if batched else "example"
            raise TypeError(
                f"{where}: {what} {i} is a {type(item).__name__}; expected an (inputs, labels) pair"
            )
        xs.append(torch.as_tensor(item[0]))
        ys.append(torch.as_tensor(item[1]))
    if not xs:
        raise ValueError(f"{where} yields no examples")
    return xs, ys
