"""Real datasets with fixed, seeded splits: ``load("fashion-mnist")``, ``load("digits")``,
``load("text", context=128)``."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

from sparsetorch._registry import Registry
from sparsetorch.data.digits import load_digits
from sparsetorch.data.fashion_mnist import load_fashion_mnist, locate
from sparsetorch.data.splits import Dataset, Split
from sparsetorch.data.text import load_text

DATASETS: Registry[Dataset] = Registry("dataset")


class DataFallbackWarning(UserWarning):
    """Fashion-MNIST was not found and scikit-learn's digits are used instead."""


@DATASETS.register("fashion-mnist")
def _fashion_mnist(data_dir: str | Path | None = None, seed: int = 0) -> Dataset:
    directory = locate(data_dir)
    if directory is None:
        warnings.warn(
            "Fashion-MNIST not found (install the Debian package dataset-fashion-mnist, set "
            "$SPARSETORCH_FASHION_MNIST or pass --data-dir); falling back to scikit-learn's "
            "digits dataset",
            DataFallbackWarning,
            stacklevel=3,
        )
        return load_digits(seed=seed)
    return load_fashion_mnist(directory, seed=seed)


@DATASETS.register("digits")
def _digits(data_dir: str | Path | None = None, seed: int = 0) -> Dataset:
    return load_digits(seed=seed)


@DATASETS.register("text")
def _text(data_dir: str | Path | None = None, seed: int = 0, **options) -> Dataset:
    return load_text(data_dir, seed=seed, **options)


def register(name: str) -> Callable:
    """Register another dataset factory ``(data_dir=None, seed=0) -> Dataset``."""
    return DATASETS.register(name)


def load(
    name: str = "fashion-mnist", data_dir: str | Path | None = None, seed: int = 0, **options
) -> Dataset:
    """``options`` go to the dataset (e.g. ``context`` and ``max_bytes`` for "text")."""
    return DATASETS.build(name, data_dir=data_dir, seed=seed, **options)


__all__ = ["DATASETS", "DataFallbackWarning", "Dataset", "Split", "load", "register"]
