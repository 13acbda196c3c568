"""``eager_cache``: an LRU cache of values that hold tensors, kept out of tracing.

``functools.lru_cache`` around a function that builds tensors is wrong under tracing:
``torch.export`` (non-strict, the default) runs the Python for real on fake tensors, so the
cache would keep a traced tensor and hand it to the next eager call ("Could not guard on
data-dependent expression", seen after exporting a ``SparseAttention`` on torch 2.13). Under
``torch.compile`` Dynamo ignores an ``lru_cache`` wrapper anyway. While tracing, this cache is
neither read nor written: the function runs as written.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

import torch

T = TypeVar("T")


def eager_cache(maxsize: int) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """``functools.lru_cache(maxsize)`` for eager calls only; ``cache_clear`` and
    ``cache_info`` as lru_cache's."""

    def wrap(fn: Callable[..., T]) -> Callable[..., T]:
        cached = functools.lru_cache(maxsize=maxsize)(fn)

        @functools.wraps(fn)
        def call(*args, **kwargs):
            if torch.compiler.is_compiling():
                return fn(*args, **kwargs)
            return cached(*args, **kwargs)

        call.cache_clear = cached.cache_clear
        call.cache_info = cached.cache_info
        return call

    return wrap
