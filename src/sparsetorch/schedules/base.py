"""The schedule contract: when masks change (``is_update_step(step)``) and to what.

``step`` counts optimizer steps from 0 (as ``sparsetorch.experiments.hooks``). Sparsity
schedules (one-shot, gradual) give ``sparsity_at(step)``; drop-fraction schedules for
drop-and-grow methods (RigL, SET) give ``fraction_at(step)``.
"""

from __future__ import annotations

from sparsetorch._checks import is_int, is_real


def check_step(step: int, name: str = "step") -> int:
    if not is_int(step) or step < 0:
        raise ValueError(f"{name} must be an int >= 0, got {step!r}")
    return int(step)


def check_sparsity(value: float, name: str) -> float:
    if not is_real(value) or not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")
    return float(value)


class Schedule:
    name: str = "schedule"

    def is_update_step(self, step: int) -> bool:
        raise NotImplementedError


class SparsitySchedule(Schedule):
    def sparsity_at(self, step: int) -> float:
        raise NotImplementedError
