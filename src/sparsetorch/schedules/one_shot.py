"""One-shot: prune once, at ``step`` (default 0), straight to the final sparsity."""

from __future__ import annotations

from sparsetorch.schedules.base import SparsitySchedule, check_sparsity, check_step


class OneShot(SparsitySchedule):
    name = "one_shot"

    def __init__(self, sparsity: float, step: int = 0) -> None:
        self.sparsity = check_sparsity(sparsity, "sparsity")
        self.step = check_step(step, "step")

    def sparsity_at(self, step: int) -> float:
        return self.sparsity if check_step(step) >= self.step else 0.0

    def is_update_step(self, step: int) -> bool:
        return check_step(step) == self.step

    def __repr__(self) -> str:
        return f"OneShot(sparsity={self.sparsity}, step={self.step})"
