"""PNG plots of runs: training curves, per-layer density bars, comparisons of several runs.

Figures are drawn on matplotlib's Agg canvas directly (no pyplot, no global backend switch)
and written atomically.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from sparsetorch._files import atomic_write

Rows = Sequence[dict[str, Any]]


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", bbox_inches="tight"))


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _series(rows: Rows, key: str) -> tuple[list[int], list[float]]:
    pairs = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def plot_curves(rows: Rows, path: str | Path, title: str = "", early_stop: int | None = None):
    """Loss (train/val/test) and accuracy (val/test) against the step."""
    fig = _figure(10, 4)
    loss_ax, acc_ax = fig.subplots(1, 2)
    for key, style in (("train_loss", "-"), ("val_loss", "--"), ("test_loss", ":")):
        loss_ax.plot(*_series(rows, key), style, label=key.replace("_", " "))
    for key, style in (("val_acc", "--"), ("test_acc", ":")):
        acc_ax.plot(*_series(rows, key), style, marker=".", label=key.replace("_", " "))
    for ax, name in ((loss_ax, "loss"), (acc_ax, "accuracy")):
        if early_stop is not None:
            ax.axvline(early_stop, color="grey", linewidth=0.8, label="early stop")
        ax.set_xlabel("step")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    return _save(fig, path)


def plot_densities(layers: dict[str, dict[str, Any]], path: str | Path, title: str = ""):
    """One horizontal bar per sparsifiable weight: its density (nonzeros / size)."""
    names = list(layers)
    fig = _figure(8, 1.2 + 0.35 * max(len(names), 1))
    ax = fig.subplots()
    densities = [layers[n]["density"] for n in names]
    ax.barh(range(len(names)), densities, color="tab:blue")
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("density (nonzeros / size)")
    for i, d in enumerate(densities):
        inside = d > 0.85  # label inside the bar when there is no room after it
        x, color = (d - 0.01, "white") if inside else (d + 0.01, "black")
        ax.text(
            x, i, f"{d:.3f}", va="center", ha="right" if inside else "left", fontsize=8, color=color
        )
    ax.set_title(title)
    return _save(fig, path)


def plot_comparison(runs: Sequence[tuple[str, Rows]], path: str | Path):
    """Test accuracy and validation loss of several runs against the step."""
    fig = _figure(10, 4)
    acc_ax, loss_ax = fig.subplots(1, 2)
    for label, rows in runs:
        acc_ax.plot(*_series(rows, "test_acc"), marker=".", label=label)
        loss_ax.plot(*_series(rows, "val_loss"), marker=".", label=label)
    for ax, name in ((acc_ax, "test accuracy"), (loss_ax, "validation loss")):
        ax.set_xlabel("step")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, path)
