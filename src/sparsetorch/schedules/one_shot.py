"""One-shot: prune once, at ``step`` (default 0), straight to the final sparsity; before that
step the sparsity is ``initial_sparsity`` (default 0)."""

from __future__ import annotations

from sparsetorch.schedules.base import SparsitySchedule, check_sparsity, check_step


class OneShot(SparsitySchedule):
    name = "one_shot"

    def __init__(self, sparsity: float, step: int = 0, initial_sparsity: float = 0.0) -> None:
        self.sparsity = check_sparsity(sparsity, "sparsity")
        self.step = check_step(step, "step")
        self.initial_sparsity = check_sparsity(initial_sparsity, "initial_sparsity")
        if self.initial_sparsity > self.sparsity:
            raise ValueError(f"initial_sparsity {initial_sparsity} must be <= sparsity {sparsity}")

    @classmethod
    def ramp(
        cls,
        initial_sparsity: float,
        final_sparsity: float,
        begin_step: int,
        end_step: int,
        frequency: int,
    ) -> OneShot:
        """The whole ramp in one update at ``begin_step`` (end and frequency do not apply)."""
        return cls(final_sparsity, step=begin_step, initial_sparsity=initial_sparsity)

    def sparsity_at(self, step: int) -> float:
        return self.sparsity if check_step(step) >= self.step else self.initial_sparsity

    def is_update_step(self, step: int) -> bool:
        return check_step(step) == self.step

    def __repr__(self) -> str:
        return (
            f"OneShot(sparsity={self.sparsity}, step={self.step}, "
            f"initial_sparsity={self.initial_sparsity})"
        )
