"""Real datasets with fixed, seeded splits: ``load("fashion-mnist")``, ``load("digits")``,
``load("text", context=128)``; and your own: ``load("data.npz")`` (arrays x_train, y_train,
x_test, y_test), ``load("imagefolder:DIR")`` (one subfolder per class), ``as_dataset(...)``
(tensors, a torch Dataset or DataLoader)."""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable
from pathlib import Path

from sparsetorch._registry import Registry
from sparsetorch.data.adapt import as_dataset, is_source
from sparsetorch.data.digits import load_digits
from sparsetorch.data.fashion_mnist import load_fashion_mnist, locate
from sparsetorch.data.imagefolder import PREFIX as IMAGEFOLDER
from sparsetorch.data.imagefolder import folder_digest, load_imagefolder
from sparsetorch.data.npz import load_npz
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
    if data_dir is not None:
        raise ValueError(
            f"digits ships with scikit-learn and reads no data dir; got data_dir {str(data_dir)!r}"
        )
    return load_digits(seed=seed)


@DATASETS.register("text")
def _text(data_dir: str | Path | None = None, seed: int = 0, **options) -> Dataset:
    return load_text(data_dir, seed=seed, **options)


def register(name: str) -> Callable:
    """Register another dataset factory ``(data_dir=None, seed=0) -> Dataset``."""
    return DATASETS.register(name)


# the forms of a data set of your own, beside the registered names
FILE_FORMS = ("PATH.npz", f"{IMAGEFOLDER}DIR")


def file_source(name: str) -> tuple[str, Path] | None:
    """``("npz", path)`` or ``("imagefolder", dir)`` for a data set of your own, else None."""
    if name[: len(IMAGEFOLDER)].lower() == IMAGEFOLDER:
        return "imagefolder", Path(name[len(IMAGEFOLDER) :]).expanduser()
    if name.lower().endswith(".npz"):
        return "npz", Path(name).expanduser()
    return None


def known_names() -> list[str]:
    return [*DATASETS.names(), *FILE_FORMS]


def check_name(name: str) -> None:
    """A ValueError for an unknown name (listing the known ones), a FileNotFoundError for a
    data set of your own that is not there."""
    source = file_source(name)
    if source is None:
        if name.strip().lower() not in DATASETS:
            raise ValueError(f"unknown dataset {name!r}; known: {', '.join(known_names())}")
        return
    kind, path = source
    if kind == "npz" and not path.is_file():
        raise FileNotFoundError(f"dataset file {str(path)!r} does not exist")
    if kind == "imagefolder" and not path.is_dir():
        raise FileNotFoundError(f"image folder {str(path)!r} is not a directory")


def digest(name: str) -> str | None:
    """SHA-256 (16 hex digits) of a data set of your own (the .npz file's bytes, or the image
    folder's paths and bytes): the runner identifies such runs by their data. None for a
    registered data set."""
    source = file_source(name)
    if source is None:
        return None
    kind, path = source
    if kind == "imagefolder":
        return folder_digest(path)
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def load(
    name: str = "fashion-mnist", data_dir: str | Path | None = None, seed: int = 0, **options
) -> Dataset:
    """``options`` go to the dataset (e.g. ``context`` and ``max_bytes`` for "text";
    ``val_fraction`` for a .npz file; ``size``, ``mode``, ``normalize`` for an image folder)."""
    source = file_source(name)
    if source is None:
        return DATASETS.build(name, data_dir=data_dir, seed=seed, **options)
    if data_dir is not None:
        raise ValueError(f"data_dir is not used by dataset {name!r} (its path is in the name)")
    kind, path = source
    loader = load_npz if kind == "npz" else load_imagefolder
    return loader(path, name=name, seed=seed, **options)


__all__ = [
    "DATASETS",
    "FILE_FORMS",
    "DataFallbackWarning",
    "Dataset",
    "Split",
    "as_dataset",
    "check_name",
    "digest",
    "file_source",
    "is_source",
    "load",
    "load_imagefolder",
    "load_npz",
    "register",
]
