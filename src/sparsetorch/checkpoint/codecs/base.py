"""The codec interface shared by every index encoding."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sparsetorch.checkpoint.support import Support

Shape = tuple[int, ...]  # the full tensor shape
PartsSpec = dict[str, tuple[str, tuple[int, ...]]]  # part -> (numpy dtype name, shape)


@dataclass(frozen=True)
class Plan:
    codec: str
    nbytes: int  # bytes of the index parts (values not counted)
    params: dict[str, Any] = field(default_factory=dict)
    pattern: str = "unstructured"


def shape2d(shape: Shape) -> tuple[int, int]:
    """(rows, cols) view of a tensor: (shape[0], -1) from 2-D up, (1, numel) below."""
    numel = math.prod(shape)
    if len(shape) >= 2 and shape[0] > 0:
        return shape[0], numel // shape[0]
    return 1, numel


def numel_of(shape: Shape) -> int:
    return math.prod(shape)


class Codec:
    """Encode/decode the kept positions (row-major) of a tensor of ``shape``.

    ``plan`` may return None (not applicable) and may skip expensive work when it cannot
    beat ``budget`` index bytes. ``parts_spec`` is the exact parts a valid file holds; ``decode``
    validates every invariant it relies on and raises ``CheckpointError`` otherwise.
    """

    name: str

    def plan(self, support: Support, shape: Shape, budget: int) -> Plan | None:
        raise NotImplementedError

    def encode(self, support: Support, shape: Shape, params: dict) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def parts_spec(self, shape: Shape, nnz: int, params: dict) -> PartsSpec:
        raise NotImplementedError

    def decode(self, parts: dict[str, np.ndarray], shape: Shape, nnz: int, params: dict) -> Support:
        raise NotImplementedError


def choose(
    codecs: list[Codec], support: Support, shape: Shape, budget: int
) -> tuple[Plan | None, str]:
    """The plan with the fewest index bytes strictly below ``budget`` (ties go to the earlier
    codec), and the pattern a structured codec detected ("unstructured" if none)."""
    best, pattern = None, "unstructured"
    for codec in codecs:
        plan = codec.plan(support, shape, budget)
        if plan is None:
            continue
        if pattern == "unstructured":
            pattern = plan.pattern
        if plan.nbytes < budget:
            best, budget = plan, plan.nbytes
    return best, pattern
