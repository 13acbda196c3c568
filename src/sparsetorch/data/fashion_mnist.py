"""Fashion-MNIST (Xiao et al. 2017) from the four IDX files, 55K/5K/10K split."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from sparsetorch.data.idx import read_idx
from sparsetorch.data.splits import Dataset, Split, split_train_val

# where the Debian package `dataset-fashion-mnist` puts the files
DEFAULT_DIRS = ("/usr/share/datasets/fashion-mnist",)
ENV_VAR = "SPARSETORCH_FASHION_MNIST"
FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
# per-pixel statistics of the Fashion-MNIST training set (pixels scaled to [0, 1])
MEAN, STD = 0.2860, 0.3530
CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip


def _find(directory: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (directory / name).is_file():
            return directory / name
    return None


def locate(data_dir: str | Path | None = None) -> Path | None:
    """The directory holding the four files: ``data_dir``, $SPARSETORCH_FASHION_MNIST, or the
    Debian package's. An explicit ``data_dir`` that lacks a file is an error, not a fallback."""
    if data_dir is not None:
        directory = Path(data_dir)
        if not directory.is_dir():
            raise FileNotFoundError(f"data_dir {str(directory)!r} is not a directory")
        missing = [s for s in FILES.values() if _find(directory, s) is None]
        if missing:
            raise FileNotFoundError(
                f"data_dir {str(directory)!r} lacks Fashion-MNIST files: {', '.join(missing)} "
                "(.gz or uncompressed)"
            )
        return directory
    candidates = [os.environ[ENV_VAR]] if os.environ.get(ENV_VAR) else []
    for candidate in (*candidates, *DEFAULT_DIRS):
        directory = Path(candidate)
        if all(_find(directory, s) is not None for s in FILES.values()):
            return directory
    return None


def _images(path: Path) -> torch.Tensor:
    raw = read_idx(path, expect_ndim=3)
    if raw.shape[1:] != (28, 28) or raw.dtype != np.uint8:
        raise ValueError(f"{path}: expected uint8 images of 28x28, found {raw.dtype} {raw.shape}")
    x = torch.from_numpy(raw.astype(np.float32) / 255.0)
    return ((x - MEAN) / STD).unsqueeze(1)  # (N, 1, 28, 28)


def _labels(path: Path, n: int) -> torch.Tensor:
    raw = read_idx(path, expect_ndim=1)
    if raw.shape != (n,):
        raise ValueError(f"{path}: {raw.shape[0]} labels for {n} images")
    if raw.max() > 9:
        raise ValueError(f"{path}: label {int(raw.max())} outside 0..9")
    return torch.from_numpy(raw.astype(np.int64))


def load_fashion_mnist(directory: Path, n_val: int = 5000, seed: int = 0) -> Dataset:
    paths = {key: _find(directory, stem) for key, stem in FILES.items()}
    x_train = _images(paths["train_images"])
    y_train = _labels(paths["train_labels"], x_train.shape[0])
    x_test = _images(paths["test_images"])
    y_test = _labels(paths["test_labels"], x_test.shape[0])
    train, val = split_train_val(x_train, y_train, n_val, seed)
    return Dataset("fashion-mnist", train, val, Split(x_test, y_test), 10, (1, 28, 28))
