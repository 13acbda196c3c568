"""Constant drop fraction: SET's schedule (Mocanu et al. 2018 drop zeta = 0.3 of the active
connections at every update, without decay); updates every ``frequency`` steps while
``0 < t < end_step``, as the cosine schedule."""

from __future__ import annotations

from sparsetorch.schedules.base import FractionSchedule, check_step


class ConstantFraction(FractionSchedule):
    name = "constant"

    def fraction_at(self, step: int) -> float:
        return 0.0 if check_step(step) >= self.end_step else self.fraction
