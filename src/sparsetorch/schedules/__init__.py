"""Schedules: when masks change and to what. ``SCHEDULES.build("gradual", final_sparsity=0.9,
begin_step=0, end_step=1000, frequency=100)``.

=============  ==========================================================  ================
``"one_shot"``  prune once to the final sparsity                           :class:`OneShot`
``"gradual"``   Zhu & Gupta cubic ramp, every ``frequency`` steps          :class:`Gradual`
``"cosine"``    RigL/SET drop fraction alpha/2 (1 + cos(pi t / T_end))     :class:`CosineDecay`
=============  ==========================================================  ================

Sparsity schedules have ``sparsity_at(step)``, drop-fraction ones ``fraction_at(step)``; all
have ``is_update_step(step)``.
"""

from __future__ import annotations

from sparsetorch._registry import Registry
from sparsetorch.schedules.base import Schedule, SparsitySchedule
from sparsetorch.schedules.cosine import CosineDecay
from sparsetorch.schedules.gradual import Gradual
from sparsetorch.schedules.one_shot import OneShot

SCHEDULES: Registry[Schedule] = Registry("schedule")
SCHEDULES.register("one_shot")(OneShot)
SCHEDULES.register("gradual")(Gradual)
SCHEDULES.register("cosine")(CosineDecay)

__all__ = ["SCHEDULES", "CosineDecay", "Gradual", "OneShot", "Schedule", "SparsitySchedule"]
