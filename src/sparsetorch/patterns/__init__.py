"""Patterns: the shape constraint of a mask. ``PATTERNS.build("2:4")`` etc.

=================  ===========================================================
``"unstructured"``  any weight                                 (:class:`Unstructured`)
``"N:M"``           at most N of every M along the input dim, e.g. ``"2:4"`` (:class:`NM`)
``"blockHxW"``      whole H x W blocks, e.g. ``"block4x4"``   (:class:`Block`)
``"channel"``       whole output channels                      (:class:`Channel`)
=================  ===========================================================

Every pattern has ``mask(scores, density=None) -> bool`` (the valid mask with the highest
total score), ``is_valid(mask)`` and ``fixed_density`` (N/M for N:M, else None). A weight is seen
as ``(out, in, *rest)``; ``pattern.along(in_dim)`` applies the pattern to weights whose
reduction axis is ``in_dim`` (transformers' ``Conv1D``: 0), the axis the prunable-kind
registry gives (``sparsetorch.masking.in_dim_of``).
"""

from __future__ import annotations

from sparsetorch._registry import Registry
from sparsetorch.patterns.base import Oriented, Pattern
from sparsetorch.patterns.block import Block
from sparsetorch.patterns.channel import Channel
from sparsetorch.patterns.nm import NM
from sparsetorch.patterns.unstructured import Unstructured

PATTERNS: Registry[Pattern] = Registry("pattern")
PATTERNS.register("unstructured")(Unstructured)
PATTERNS.register("channel")(Channel)
PATTERNS.register_pattern(r"(\d+):(\d+)", "N:M")(NM)
PATTERNS.register_pattern(r"block(\d+)x(\d+)", "blockHxW")(Block)


def get(spec: str | Pattern) -> Pattern:
    """A pattern from its config string (or a Pattern, returned as is)."""
    pattern = PATTERNS.build(spec)
    if not isinstance(pattern, Pattern):
        raise TypeError(f"pattern must be a string or a Pattern, got {type(spec).__name__}")
    return pattern


__all__ = ["NM", "PATTERNS", "Block", "Channel", "Oriented", "Pattern", "Unstructured", "get"]
