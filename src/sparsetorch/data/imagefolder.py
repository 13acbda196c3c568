"""Your own images: ``--dataset imagefolder:DIR``, one subfolder per class (torchvision's
``ImageFolder`` layout), read with Pillow into tensors in memory.

Two layouts:

* ``DIR/<class>/*.png``: the test split (``test_fraction``, default 0.1) and then the
  validation split (``val_fraction``, default 0.1) are carved from all images by a seeded
  shuffle (``split_seed``);
* ``DIR/train/<class>/...`` and ``DIR/test/<class>/...`` (optionally ``DIR/val/<class>/...``,
  else validation is carved from train).

Classes are the subfolder names in sorted order (index 0 = the first). Files with another
suffix than an image's are ignored; a class folder without images is an error. Images become
``(C, H, W)`` float32 tensors: ``mode`` "L" (1 channel) or "RGB" (3; alpha dropped), by
default "L" when every image is grayscale, else "RGB"; ``size`` (``32`` or ``"32x48"``,
height x width) resizes them (bilinear), otherwise all must have one size. Pixels are scaled
to [0, 1], then (``normalize``, default on) standardised per channel with the mean and standard
deviation of the training split, as the built-in image data sets are.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sparsetorch.data.arrays import build, carve
from sparsetorch.data.splits import Dataset, Split

PREFIX = "imagefolder:"
SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm"}
)
SPLITS = ("train", "val", "test")
GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "F"})
MODES = ("L", "RGB")


def _pil():
    try:
        from PIL import Image
    except ImportError as exc:  # a dependency of matplotlib, so normally present
        raise ImportError(
            "imagefolder data sets read images with Pillow: pip install pillow"
        ) from exc
    return Image


def _class_dirs(directory: Path) -> list[Path]:
    return sorted((p for p in directory.iterdir() if p.is_dir()), key=lambda p: p.name)


def _images(directory: Path) -> list[Path]:
    return sorted(
        (p for p in directory.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES),
        key=lambda p: p.relative_to(directory).as_posix(),
    )


def scan(root: str | Path) -> tuple[tuple[str, ...], dict[str, list[tuple[Path, int]]]]:
    """``(classes, {split: [(image, class index)]})``; the splits are ``"all"`` for the
    one-folder layout, else ``"train"``, ``"test"`` and maybe ``"val"``."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {str(root)!r} is not a directory")
    top = {p.name for p in _class_dirs(root)}
    if {"train", "test"} <= top:
        other = sorted(top - set(SPLITS))
        if other:
            raise ValueError(
                f"image folder {str(root)!r} has train/ and test/ beside other folders "
                f"({', '.join(other)}): use DIR/<class>/ or DIR/{{train,val,test}}/<class>/"
            )
        split_dirs = {s: root / s for s in SPLITS if s in top}
    else:
        split_dirs = {"all": root}
    first = next(iter(split_dirs.values()))
    classes = tuple(p.name for p in _class_dirs(first))
    if not classes:
        raise ValueError(f"image folder {str(first)!r} has no class subfolders")
    found: dict[str, list[tuple[Path, int]]] = {}
    for split, directory in split_dirs.items():
        names = [p.name for p in _class_dirs(directory)]
        unknown = sorted(set(names) - set(classes))
        if unknown:
            raise ValueError(
                f"{directory} has class folder(s) {', '.join(unknown)} that {first} lacks"
            )
        items: list[tuple[Path, int]] = []
        for name in names:
            images = _images(directory / name)
            if not images and split in ("all", "train"):
                raise ValueError(
                    f"class folder {str(directory / name)!r} holds no images "
                    f"({', '.join(sorted(SUFFIXES))})"
                )
            items += [(path, classes.index(name)) for path in images]
        if not items:
            raise ValueError(f"{directory} holds no images")
        found[split] = items
    return classes, found


def folder_digest(root: str | Path) -> str:
    """SHA-256 (16 hex digits) of every image's path (relative) and bytes: a run on an
    image folder is identified by its contents."""
    _, found = scan(root)
    root = Path(root).expanduser()
    h = hashlib.sha256()
    for items in found.values():
        for path, label in items:
            h.update(f"{path.relative_to(root).as_posix()}|{label}|".encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:16]


def parse_size(size: int | str | None) -> tuple[int, int] | None:
    """``None``, ``32`` / ``"32"`` (square) or ``"32x48"`` (height x width)."""
    if size is None:
        return None
    if isinstance(size, int) and not isinstance(size, bool):
        height = width = size
    elif isinstance(size, str):
        parts = size.lower().split("x")
        try:
            height, width = (int(parts[0]),) * 2 if len(parts) == 1 else map(int, parts)
        except ValueError:
            raise ValueError(f"size must be N or HxW (e.g. 32 or 32x48), got {size!r}") from None
    else:
        raise TypeError(f"size must be N or 'HxW', got {size!r}")
    if height < 1 or width < 1:
        raise ValueError(f"size must be positive, got {size!r}")
    return height, width


def _choose_mode(paths: list[Path], mode: str | None) -> str:
    if mode is not None:
        if not isinstance(mode, str) or mode.upper() not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        return mode.upper()
    for path in paths:
        with _open(path) as img:
            if img.mode not in GRAY_MODES:
                return "RGB"
    return "L"


@contextlib.contextmanager
def _open(path: Path) -> Iterator[Any]:
    """``PIL.Image.open`` with a ValueError naming the file for what Pillow cannot read."""
    image = _pil()
    try:
        with image.open(path) as img:
            yield img
    except OSError as exc:  # PIL.UnidentifiedImageError is an OSError
        raise ValueError(f"cannot read image {str(path)!r}: {exc}") from exc


def read_images(items: list[tuple[Path, int]], mode: str, size: tuple[int, int] | None) -> Split:
    """The images as an ``(N, C, H, W)`` uint8 tensor and their labels."""
    image = _pil()
    arrays, labels, first = [], [], None
    for path, label in items:
        with _open(path) as img:
            img = img.convert(mode)
            if size is not None:
                img = img.resize((size[1], size[0]), image.Resampling.BILINEAR)
            array = np.asarray(img, dtype=np.uint8)
        if first is None:
            first = (path, array.shape)
        elif array.shape != first[1]:
            raise ValueError(
                f"images differ in size: {first[0]} is {first[1][1]}x{first[1][0]}, {path} is "
                f"{array.shape[1]}x{array.shape[0]} (width x height): pass size=HxW "
                "(--data-option size=32x32) to resize them"
            )
        arrays.append(array if array.ndim == 3 else array[:, :, None])  # (H, W, C)
        labels.append(label)
    x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()  # (N, C, H, W)
    return Split(x, torch.tensor(labels, dtype=torch.int64))


def load_imagefolder(
    root: str | Path,
    name: str | None = None,
    seed: int = 0,
    size: int | str | None = None,
    mode: str | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    normalize: bool = True,
) -> Dataset:
    """The images under ``root`` (layouts and options in the module doc)."""
    classes, found = scan(root)
    shape = parse_size(size)
    paths = [path for items in found.values() for path, _ in items]
    mode = _choose_mode(paths, mode)
    splits = {split: read_images(items, mode, shape) for split, items in found.items()}
    if "all" in splits:
        train, test = carve(splits["all"], test_fraction, seed, "test_fraction")
        train, val = carve(train, val_fraction, seed + 1, "val_fraction")
    else:
        train, test, val = splits["train"], splits["test"], splits.get("val")
        if val is None:
            train, val = carve(train, val_fraction, seed, "val_fraction")
    floats = [Split(s.x.float() / 255.0, s.y) for s in (train, val, test)]
    if normalize:
        pixels = floats[0].x.transpose(0, 1).reshape(floats[0].x.shape[1], -1)  # (C, N*H*W)
        mean = pixels.mean(1).view(1, -1, 1, 1)
        std = pixels.std(1).clamp_min(1e-6).view(1, -1, 1, 1)
        floats = [Split((s.x - mean) / std, s.y) for s in floats]
    label = f"{PREFIX}{root}" if name is None else name
    train, val, test = floats
    return build(label, train, test, val, seed=seed, classes=classes)
