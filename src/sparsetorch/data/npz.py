"""Your own arrays: ``--dataset PATH.npz``, a NumPy ``.npz`` file with ``x_train``,
``y_train``, ``x_test``, ``y_test`` (and optionally ``x_val``, ``y_val``).

Without ``x_val``/``y_val`` the validation split is carved from the training examples by a
seeded shuffle (``val_fraction``, default 0.1; seed ``split_seed``), as the built-in data sets
do. Arrays are converted by ``sparsetorch.data.arrays`` (uint8 pixels to [0, 1], other
integer inputs kept as token ids). The file is read with ``allow_pickle=False``: it can hold
numbers only, never code.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from sparsetorch.data.arrays import build, pair
from sparsetorch.data.splits import Dataset

REQUIRED = ("x_train", "y_train", "x_test", "y_test")
OPTIONAL = ("x_val", "y_val")


def load_npz(
    path: str | Path,
    name: str | None = None,
    seed: int = 0,
    val_fraction: float = 0.1,
    num_classes: int | None = None,
) -> Dataset:
    """The data set in ``path``; ``name`` (default: the path) names it in reports."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"dataset file {str(path)!r} does not exist")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise ValueError(f"{path}: not a readable .npz file of arrays ({exc})") from exc
    missing = [key for key in REQUIRED if key not in arrays]
    if missing:
        raise ValueError(
            f"{path} lacks the array(s) {', '.join(missing)}; it must hold "
            f"{', '.join(REQUIRED)} (and optionally {', '.join(OPTIONAL)}), found "
            f"{', '.join(sorted(arrays)) or 'none'}"
        )
    if ("x_val" in arrays) != ("y_val" in arrays):
        raise ValueError(f"{path} holds only one of x_val, y_val: give both or neither")
    unknown = sorted(set(arrays) - set(REQUIRED) - set(OPTIONAL))
    if unknown:
        raise ValueError(
            f"{path} holds unknown array(s) {', '.join(unknown)}; known: "
            f"{', '.join(REQUIRED + OPTIONAL)}"
        )
    train = pair(arrays["x_train"], arrays["y_train"], f"{path.name}: x_train/y_train")
    test = pair(arrays["x_test"], arrays["y_test"], f"{path.name}: x_test/y_test")
    val = (
        pair(arrays["x_val"], arrays["y_val"], f"{path.name}: x_val/y_val")
        if "x_val" in arrays
        else None
    )
    return build(
        str(path) if name is None else name,
        train,
        test,
        val,
        seed=seed,
        val_fraction=val_fraction,
        num_classes=num_classes,
    )
