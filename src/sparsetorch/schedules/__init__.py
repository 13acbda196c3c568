"""Schedules: when masks change and to what.

=============  ==========================================================  ====================
``"one_shot"``  prune once (at the start step) to the final sparsity        :class:`OneShot`
``"gradual"``   Zhu & Gupta cubic ramp, every ``frequency`` steps          :class:`Gradual`
``"cosine"``    RigL's drop fraction alpha/2 (1 + cos(pi t / T_end))       :class:`CosineDecay`
``"constant"``  SET's constant drop fraction alpha until T_end             :class:`ConstantFraction`
=============  ==========================================================  ====================

Two kinds, each built through one signature so that an algorithm's ``schedule`` setting is a
real choice: sparsity schedules (GMP: ``sparsity_at(step)``) by :func:`sparsity_schedule`,
drop-fraction schedules (SET, RigL: ``fraction_at(step)``) by :func:`fraction_schedule`. All
have ``is_update_step(step)``. ``SCHEDULES.build("gradual", final_sparsity=0.9, begin_step=0,
end_step=1000, frequency=100)`` builds one with its own arguments.
"""

from __future__ import annotations

from sparsetorch._registry import Registry
from sparsetorch.schedules.base import FractionSchedule, Schedule, SparsitySchedule
from sparsetorch.schedules.constant import ConstantFraction
from sparsetorch.schedules.cosine import CosineDecay
from sparsetorch.schedules.gradual import Gradual
from sparsetorch.schedules.one_shot import OneShot

SCHEDULES: Registry[Schedule] = Registry("schedule")
SCHEDULES.register("one_shot")(OneShot)
SCHEDULES.register("gradual")(Gradual)
SCHEDULES.register("cosine")(CosineDecay)
SCHEDULES.register("constant")(ConstantFraction)


def _of_kind(name: str, kind: type[Schedule], uses: str) -> type:
    cls = SCHEDULES.lookup(name)
    if not (isinstance(cls, type) and issubclass(cls, kind)):
        known = ", ".join(names_of_kind(kind))
        raise ValueError(f"schedule {name!r} does not give {uses}; choose one of {known}")
    return cls


def sparsity_schedule(
    name: str,
    *,
    initial_sparsity: float,
    final_sparsity: float,
    begin_step: int,
    end_step: int,
    frequency: int,
) -> SparsitySchedule:
    """A sparsity schedule by name (``"gradual"``, ``"one_shot"``)."""
    cls = _of_kind(name, SparsitySchedule, "a sparsity per step")
    return cls.ramp(initial_sparsity, final_sparsity, begin_step, end_step, frequency)


def fraction_schedule(
    name: str, *, fraction: float, end_step: int, frequency: int
) -> FractionSchedule:
    """A drop-fraction schedule by name (``"cosine"``, ``"constant"``)."""
    cls = _of_kind(name, FractionSchedule, "a drop fraction per step")
    return cls(fraction, end_step, frequency)


def names_of_kind(kind: type[Schedule]) -> list[str]:
    """The registered schedule names of one kind (for help texts and errors)."""
    return [n for n in SCHEDULES.names() if issubclass(SCHEDULES.lookup(n), kind)]


__all__ = [
    "SCHEDULES",
    "ConstantFraction",
    "CosineDecay",
    "FractionSchedule",
    "Gradual",
    "OneShot",
    "Schedule",
    "SparsitySchedule",
    "fraction_schedule",
    "names_of_kind",
    "sparsity_schedule",
]
