"""Cosine-decaying drop fraction for drop-and-grow methods (Evci et al. 2020, RigL):

    alpha_t = alpha / 2 * (1 + cos(pi * t / T_end))

The topology is updated every ``delta_T = frequency`` steps while ``0 < t < T_end``; none at
step 0 (the mask was just made) and none from ``T_end`` on, where the fraction is 0.
"""

from __future__ import annotations

import math

from sparsetorch._checks import is_int, is_real
from sparsetorch.schedules.base import Schedule, check_step


class CosineDecay(Schedule):
    name = "cosine"

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
        if check_step(step) >= self.end_step:
            return 0.0
        return self.fraction / 2 * (1 + math.cos(math.pi * step / self.end_step))

    def is_update_step(self, step: int) -> bool:
        check_step(step)
        return 0 < step < self.end_step and step % self.frequency == 0

    def __repr__(self) -> str:
        return (
            f"CosineDecay(fraction={self.fraction}, end_step={self.end_step}, "
            f"frequency={self.frequency})"
        )
