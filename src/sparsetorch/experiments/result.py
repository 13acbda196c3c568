"""What a training run returns: the trained model, every evaluation row, saved weights.

In a notebook a cell ending in a :class:`TrainResult` shows its final and early-stop
evaluations as a table, and its training curves when the run has a directory
(``_repr_html_``, ``_repr_markdown_``).
"""

from __future__ import annotations

import base64
import html
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


ROW_KEYS = ("step", "epoch", "val_loss", "val_acc", "test_loss", "test_acc", "sparsity")
ROW_HEADER = ("", "step", "epoch", "val loss", "val acc", "test loss", "test acc", "sparsity")


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "-" if value is None else str(value)


def png_data_uri(path: Path) -> str:
    """A PNG file as a ``data:`` URI (an image a notebook shows without the file)."""
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


@dataclass(repr=False)
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

    def __repr__(self) -> str:
        return f"TrainResult({self.summary()})"

    def _rows(self) -> list[list[str]]:
        return [
            [label, *(_cell(row.get(k)) for k in ROW_KEYS)]
            for label, row in (("final", self.final), ("early stop", self.early_stop))
        ]

    def _heading(self) -> str:
        hp = self.hparams
        s = hp.sparsity
        method = "dense" if s.method == "dense" else f"{s.method}, sparsity {s.sparsity:g}"
        reused = ", reused" if self.reused else ""
        return (
            f"{hp.model.name} on {hp.dataset.name} ({method}, seed {hp.training.seed}): "
            f"{self.total_steps} steps in {self.wall_s:.1f} s{reused}"
        )

    def _repr_markdown_(self) -> str:
        lines = ["| " + " | ".join(ROW_HEADER) + " |", "|" + "---|" * len(ROW_HEADER)]
        lines += ["| " + " | ".join(r) + " |" for r in self._rows()]
        where = f"\n\nrun dir: `{self.run_dir}`" if self.run_dir else ""
        return f"**{self._heading()}**\n\n" + "\n".join(lines) + where

    def _repr_html_(self) -> str:
        from sparsetorch.model_report import html_table

        parts = [f"<p><b>{html.escape(self._heading())}</b></p>"]
        parts.append(html_table(list(ROW_HEADER), self._rows(), left={0}))
        if self.run_dir is not None:
            parts.append(f"<p>run dir: <code>{html.escape(str(self.run_dir))}</code></p>")
            curves = Path(self.run_dir) / "plots" / "curves.png"
            if curves.is_file():
                parts.append(f'<img src="{png_data_uri(curves)}" style="max-width:100%">')
        return "\n".join(parts)

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
