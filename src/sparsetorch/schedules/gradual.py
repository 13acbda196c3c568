"""Gradual magnitude pruning's cubic schedule (Zhu & Gupta 2017, "To prune, or not to prune").

    s_t = s_f + (s_i - s_f) * (1 - (t - t0) / (n * dt))**3

Masks are updated every ``dt = frequency`` steps from ``t0 = begin_step`` and at
``t0 + n*dt = end_step`` (the last update, which reaches ``s_f``, also when ``end_step -
begin_step`` is not a multiple of ``frequency``). Between updates the sparsity holds; before
``begin_step`` it is ``s_i``, after ``end_step`` it is ``s_f``.
"""

from __future__ import annotations

from sparsetorch._checks import is_int
from sparsetorch.schedules.base import SparsitySchedule, check_sparsity, check_step


class Gradual(SparsitySchedule):
    name = "gradual"

    def __init__(
        self,
        final_sparsity: float,
        begin_step: int,
        end_step: int,
        frequency: int = 100,
        initial_sparsity: float = 0.0,
    ) -> None:
        self.final_sparsity = check_sparsity(final_sparsity, "final_sparsity")
        self.initial_sparsity = check_sparsity(initial_sparsity, "initial_sparsity")
        if self.initial_sparsity > self.final_sparsity:
            raise ValueError(
                f"initial_sparsity {initial_sparsity} must be <= final_sparsity {final_sparsity}"
            )
        self.begin_step = check_step(begin_step, "begin_step")
        self.end_step = check_step(end_step, "end_step")
        if self.end_step < self.begin_step:
            raise ValueError(f"end_step {end_step} must be >= begin_step {begin_step}")
        if not is_int(frequency) or frequency < 1:
            raise ValueError(f"frequency must be an int >= 1, got {frequency!r}")
        self.frequency = int(frequency)

    @classmethod
    def ramp(
        cls,
        initial_sparsity: float,
        final_sparsity: float,
        begin_step: int,
        end_step: int,
        frequency: int,
    ) -> Gradual:
        return cls(final_sparsity, begin_step, end_step, frequency, initial_sparsity)

    def is_update_step(self, step: int) -> bool:
        check_step(step)
        if not self.begin_step <= step <= self.end_step:
            return False
        return step == self.end_step or (step - self.begin_step) % self.frequency == 0

    def last_update_step(self, step: int) -> int | None:
        """The latest update step <= ``step`` (None before ``begin_step``)."""
        check_step(step)
        if step < self.begin_step:
            return None
        if step >= self.end_step:
            return self.end_step
        return step - (step - self.begin_step) % self.frequency

    def formula(self, t: int) -> float:
        """s_t at an update step t in [begin_step, end_step]."""
        span = self.end_step - self.begin_step
        progress = 1.0 if span == 0 else (t - self.begin_step) / span
        s_i, s_f = self.initial_sparsity, self.final_sparsity
        return s_f + (s_i - s_f) * (1.0 - progress) ** 3

    def sparsity_at(self, step: int) -> float:
        t = self.last_update_step(step)
        return self.initial_sparsity if t is None else self.formula(t)

    def __repr__(self) -> str:
        return (
            f"Gradual(final_sparsity={self.final_sparsity}, begin_step={self.begin_step}, "
            f"end_step={self.end_step}, frequency={self.frequency}, "
            f"initial_sparsity={self.initial_sparsity})"
        )
