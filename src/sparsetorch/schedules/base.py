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
    """Sparsity after each step, ramping from an initial to a final sparsity (GMP)."""

    @classmethod
    def ramp(
        cls,
        initial_sparsity: float,
        final_sparsity: float,
        begin_step: int,
        end_step: int,
        frequency: int,
    ) -> SparsitySchedule:
        """The schedule from ``initial_sparsity`` to ``final_sparsity`` between the steps,
        updating every ``frequency`` steps (one uniform signature for every sparsity schedule)."""
        raise NotImplementedError

    def sparsity_at(self, step: int) -> float:
        raise NotImplementedError


class FractionSchedule(Schedule):
    """The fraction of active connections a drop-and-grow update replaces at each update step
    (SET, RigL); every one is built as ``cls(fraction, end_step, frequency)``: updates every
    ``frequency`` steps while ``0 < step < end_step``."""

    def __init__(self, fraction: float, end_step: int, frequency: int = 100) -> None:
        if not is_real(fraction):
            raise TypeError(f"fraction must be a float in (0, 1], got {fraction!r}")
        if not 0.0 < fraction <= 1.0:
            raise ValueError(f"fraction must be in (0, 1], got {fraction}")
        self.fraction = float(fraction)
        self.end_step = check_step(end_step, "end_step")
        if self.end_step < 1:
            raise ValueError(f"end_step must be >= 1, got {end_step}")
        if not is_int(frequency) or frequency < 1:
            raise ValueError(f"frequency must be an int >= 1, got {frequency!r}")
        self.frequency = int(frequency)

    def fraction_at(self, step: int) -> float:
        raise NotImplementedError

    def is_update_step(self, step: int) -> bool:
        check_step(step)
        return 0 < step < self.end_step and step % self.frequency == 0

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(fraction={self.fraction}, end_step={self.end_step}, "
            f"frequency={self.frequency})"
        )
