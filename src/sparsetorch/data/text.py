"""A character-level (byte-level) text corpus that exists on every machine: the Python standard
library's own source files.

The ``*.py`` files under ``sysconfig.get_paths()["stdlib"]`` (or under ``data_dir``) are read
in sorted path order, skipping test suites and installed packages, and concatenated (one newline
between files) up to ``max_bytes``. The bytes are the tokens (vocabulary 256). The stream is cut
into non-overlapping sequences of ``context`` tokens, each paired with the same sequence shifted
by one (next-byte targets); the sequences are shuffled with a seeded generator and split into
train / validation / test (``val_fraction`` and ``test_fraction`` of them each).

The corpus depends on the Python installation: equal on machines with the same Python build.
"""

from __future__ import annotations

import os
import sysconfig
from pathlib import Path

import torch

from sparsetorch.data.splits import Dataset, Split

VOCAB = 256
SKIP_DIRS = frozenset(
    {"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__", "venv"}
)


def stdlib_dir() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def read_corpus(root: str | Path, max_bytes: int) -> bytes:
    """The first ``max_bytes`` bytes of the sorted ``*.py`` files under ``root``."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"text data_dir {str(root)!r} is not a directory")
    paths = []
    for directory, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS]
        paths += [Path(directory) / f for f in files if f.endswith(".py")]
    if not paths:
        raise ValueError(f"text data_dir {str(root)!r} holds no *.py files")
    parts: list[bytes] = []
    size = 0
    for path in sorted(paths, key=lambda p: p.relative_to(root).as_posix()):
        parts.append(path.read_bytes() + b"\n")
        size += len(parts[-1])
        if size >= max_bytes:
            return b"".join(parts)[:max_bytes]
    return b"".join(parts)


def sequences(corpus: bytes, context: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``x, y`` of shape (N, context): non-overlapping windows and their next-byte targets."""
    tokens = torch.frombuffer(bytearray(corpus), dtype=torch.uint8).long()
    n = (len(tokens) - 1) // context
    if n < 3:
        raise ValueError(
            f"the corpus ({len(tokens)} bytes) gives {n} sequences of context {context}: "
            "need at least 3 (raise max_bytes or lower context)"
        )
    x = tokens[: n * context].view(n, context)  # (N, T)
    y = tokens[1 : n * context + 1].view(n, context)  # (N, T), shifted by one byte
    return x, y


def load_text(
    data_dir: str | Path | None = None,
    seed: int = 0,
    context: int = 128,
    max_bytes: int = 4_000_000,
    val_fraction: float = 0.05,
    test_fraction: float = 0.05,
) -> Dataset:
    if not isinstance(context, int) or context < 1:
        raise ValueError(f"context must be an integer >= 1, got {context!r}")
    if not isinstance(max_bytes, int) or max_bytes < 1:
        raise ValueError(f"max_bytes must be an integer >= 1, got {max_bytes!r}")
    for name, fraction in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0 < fraction < 0.5:
            raise ValueError(f"{name} must be in (0, 0.5), got {fraction!r}")
    corpus = read_corpus(stdlib_dir() if data_dir is None else data_dir, max_bytes)
    x, y = sequences(corpus, context)
    n = x.shape[0]
    n_val, n_test = max(1, round(val_fraction * n)), max(1, round(test_fraction * n))
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    test, val, train = perm[:n_test], perm[n_test : n_test + n_val], perm[n_test + n_val :]
    return Dataset(
        "text",
        Split(x[train], y[train]),
        Split(x[val], y[val]),
        Split(x[test], y[test]),
        VOCAB,
        (context,),
    )
