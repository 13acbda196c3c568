"""Dataset containers shared by every dataset: tensors in memory, fixed seeded splits."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Split:
    x: torch.Tensor  # (N, *input_shape) float32 (images) or int64 (tokens)
    y: torch.Tensor  # (N,) int64 labels, or (N, T) next-token targets

    def __len__(self) -> int:
        return self.x.shape[0]

    def head(self, n: int) -> Split:
        """The first ``n`` examples (tests and smoke runs use tiny slices)."""
        return Split(self.x[:n], self.y[:n])


@dataclass(frozen=True)
class Dataset:
    name: str
    train: Split
    val: Split
    test: Split
    num_classes: int
    input_shape: tuple[int, ...]
    classes: tuple[str, ...] = ()  # class names, index order (image folders); () if unnamed

    def slice(self, train: int, val: int | None = None, test: int | None = None) -> Dataset:
        val = train if val is None else val
        test = val if test is None else test
        return Dataset(
            self.name,
            self.train.head(train),
            self.val.head(val),
            self.test.head(test),
            self.num_classes,
            self.input_shape,
            self.classes,
        )


def split_train_val(x: torch.Tensor, y: torch.Tensor, n_val: int, seed: int) -> tuple[Split, Split]:
    """Shuffle with a fixed seed, then hold out ``n_val`` examples for validation."""
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(x.shape[0], generator=g)
    val_idx, train_idx = perm[:n_val], perm[n_val:]
    return Split(x[train_idx], y[train_idx]), Split(x[val_idx], y[val_idx])
