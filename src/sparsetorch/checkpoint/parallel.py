"""Encode/decode tensors on a few threads: numpy, zlib and torch release the GIL in the heavy
loops (bit unpacking, nonzero, gathers and scatters, crc32), so big checkpoints use every core
the process may use (``torch.get_num_threads()``, at most 4)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import torch

T = TypeVar("T")
R = TypeVar("R")

PARALLEL_MIN_ELEMENTS = 1 << 22  # below this, thread start-up costs more than it saves
MAX_WORKERS = 4


def map_ordered(fn: Callable[[T], R], items: Sequence[T], elements: int) -> list[R]:
    """``[fn(x) for x in items]``, on threads when ``elements`` (the work) is large. The first
    exception is raised, as in the serial loop."""
    workers = min(MAX_WORKERS, torch.get_num_threads(), len(items))
    if workers < 2 or elements < PARALLEL_MIN_ELEMENTS:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(fn, items))
