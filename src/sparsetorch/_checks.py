"""Argument checks shared across the package.

Numbers as users pass them: Python or numpy scalars (``np.float32(0.5)``, ``np.int64(3)``) are
accepted alike, bools never (``True`` is an int to Python; ``np.bool_`` is neither). Tensors and
modules must hold data (not be on the meta device) wherever their values are read."""

from __future__ import annotations

import numbers
import operator
from typing import Any


def is_real(value: Any) -> bool:
    """A real number (int, float, numpy scalar), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def is_int(value: Any) -> bool:
    """An integer (int, numpy integer: anything ``operator.index`` takes), not a bool."""
    if isinstance(value, bool):
        return False
    try:
        operator.index(value)
    except TypeError:
        return False
    return True


def check_not_meta(obj: Any, what: str) -> None:
    """One TypeError when ``obj`` (a tensor, or a module's parameters and buffers) is on the
    meta device: it has shapes but no values to read, prune, measure or load into."""
    import torch

    if isinstance(obj, torch.Tensor):
        on_meta = obj.is_meta
    elif isinstance(obj, torch.nn.Module):
        on_meta = any(t.is_meta for t in (*obj.parameters(), *obj.buffers()))
    else:
        return
    if on_meta:
        raise TypeError(
            f"{what} is on the meta device: it holds no data; materialise it first (e.g. "
            "model.to_empty(device='cpu'), then load its weights)"
        )
