"""What a training run returns: the trained model, every evaluation row, saved weights."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sparsetorch.experiments import run_state
from sparsetorch.experiments.hparams import Hparams

# metric fields that vary between identical runs (everything else is bitwise reproducible)
NONDETERMINISTIC = frozenset({"wall_s"})


def early_stop_row(metrics: list[dict[str, Any]]) -> dict[str, Any]:
    """The evaluation of minimum validation loss (the earliest on ties): the early-stopping
    iteration that Frankle & Carbin (2019) report."""
    return min(metrics, key=lambda row: (row["val_loss"], row["step"]))


@dataclass
class TrainResult:
    hparams: Hparams
    model: nn.Module  # the trained model (masks attached, on the training device)
    metrics: list[dict[str, Any]]  # one row per evaluation, step 0 first
    total_steps: int
    steps_per_epoch: int
    wall_s: float
    run_dir: Path | None = None
    reused: bool = False  # True when a finished run dir was found and nothing was trained
    states: dict[int, Any] = field(default_factory=dict, repr=False)  # step -> Path | dict

    @property
    def final(self) -> dict[str, Any]:
        return self.metrics[-1]

    @property
    def early_stop(self) -> dict[str, Any]:
        return early_stop_row(self.metrics)

    @property
    def early_stop_step(self) -> int:
        return self.early_stop["step"]

    @property
    def saved_steps(self) -> list[int]:
        return sorted(self.states)

    def state_at(self, step: int) -> dict[str, torch.Tensor]:
        """The model's state_dict after ``step`` updates (0 = the initialisation, before any
        hook ran; ``total_steps`` = the final model), for each saved step."""
        if step not in self.states:
            raise ValueError(f"no weights saved at step {step}; saved steps: {self.saved_steps}")
        state = self.states[step]
        if isinstance(state, Path):
            return run_state.load_model_state(state)
        return {k: v.clone() for k, v in state.items()}

    def summary(self) -> str:
        """One line: model, data, final and early-stop test accuracy, time, where it lives."""
        hp, f, e = self.hparams, self.final, self.early_stop
        where = f" -> {self.run_dir}" if self.run_dir else ""
        reused = " (reused)" if self.reused else ""
        return (
            f"{hp.model.name} on {hp.dataset.name} ({hp.sparsity.method}, sparsity "
            f"{f['sparsity']:.3f}): test acc {f['test_acc']:.4f} after {self.total_steps} steps, "
            f"early stop at step {e['step']} (test acc {e['test_acc']:.4f}), "
            f"{self.wall_s:.1f}s{reused}{where}"
        )
