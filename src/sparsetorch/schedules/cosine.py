"""Cosine-decaying drop fraction for drop-and-grow methods (Evci et al. 2020, RigL):

    alpha_t = alpha / 2 * (1 + cos(pi * t / T_end))

The topology is updated every ``delta_T = frequency`` steps while ``0 < t < T_end``; none at
step 0 (the mask was just made) and none from ``T_end`` on, where the fraction is 0.
"""

from __future__ import annotations

import math

from sparsetorch.schedules.base import FractionSchedule, check_step


class CosineDecay(FractionSchedule):
    name = "cosine"

    def fraction_at(self, step: int) -> float:
        if check_step(step) >= self.end_step:
            return 0.0
        return self.fraction / 2 * (1 + math.cos(math.pi * step / self.end_step))
