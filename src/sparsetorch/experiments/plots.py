"""PNG plots of runs: training curves, per-layer density bars, comparisons of several runs.

Figures are drawn on matplotlib's Agg canvas directly (no pyplot, no global backend switch)
and written atomically, with the permissions the umask gives any new file. Every figure is
one a paper can use: a title naming the model, the data set and the sparsity, a legend, one
colour per method (:func:`method_color`, the same in every figure), markers on every series (a
short run's two evaluations still show), and a band of one standard deviation where several
seeds are averaged.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from sparsetorch._files import atomic_write

Rows = Sequence[dict[str, Any]]

# one colour per method, in every figure of the project (tab10 and greys)
METHOD_COLORS = {
    "dense": "black",
    "small-dense": "0.45",
    "random": "tab:olive",
    "snip": "tab:blue",
    "grasp": "tab:orange",
    "synflow": "tab:green",
    "gmp": "tab:purple",
    "set": "tab:cyan",
    "rigl": "tab:red",
    "imp": "tab:blue",
}
# colours for series that are not one method each (tab10 without the greys)
CYCLE = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown",
         "tab:pink", "tab:olive", "tab:cyan")  # fmt: skip
MARKERS = ("o", "s", "^", "v", "D", "P", "X", "*", "<", ">")


def method_color(method: str) -> str:
    """The colour of a method (``"rigl"``, ``"RigL (ERK)"``: the first word, lower case)."""
    key = method.strip().lower().split(" ")[0]
    return METHOD_COLORS.get(key, CYCLE[sum(map(ord, key)) % len(CYCLE)])


def _save(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as PNG to ``path``: a temp file next to it, then a rename. The temp file
    is created with mode 0o666, so the umask decides its permissions as for any new file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", bbox_inches="tight"))


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _series(rows: Rows, key: str) -> tuple[list[int], list[float]]:
    pairs = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def band(runs: Sequence[Rows], key: str) -> tuple[list[int], list[float], list[float]]:
    """(steps, mean, std) of metric ``key`` over several runs' rows, at the steps every run
    has (sample standard deviation; 0 for one run)."""
    per_run = [{r["step"]: r[key] for r in rows if r.get(key) is not None} for rows in runs]
    if not per_run:
        return [], [], []
    steps = sorted(set.intersection(*(set(p) for p in per_run)))
    values = [[p[s] for p in per_run] for s in steps]
    mean = [statistics.fmean(v) for v in values]
    std = [statistics.stdev(v) if len(v) > 1 else 0.0 for v in values]
    return steps, mean, std


CURVE_STYLES = {  # metric: (colour, line style, marker, label)
    "train_loss": ("tab:blue", "-", "o", "train (mean over the steps since the last evaluation)"),
    "val_loss": ("tab:orange", "--", "s", "validation"),
    "test_loss": ("tab:green", ":", "^", "test"),
    "val_acc": ("tab:orange", "--", "s", "validation"),
    "test_acc": ("tab:green", ":", "^", "test"),
}


def plot_curves(rows: Rows, path: str | Path, title: str = "", early_stop: int | None = None):
    """Loss (train/val/test) and accuracy (val/test) against the step, a marker at every
    evaluation; a vertical line at the early-stopping step (:func:`curves_figure`)."""
    return _save(curves_figure(rows, title, early_stop), path)


def curves_figure(rows: Rows, title: str = "", early_stop: int | None = None) -> Figure:
    fig = _figure(10, 4)
    loss_ax, acc_ax = fig.subplots(1, 2)
    for ax, keys in ((loss_ax, ("train_loss", "val_loss", "test_loss")),
                     (acc_ax, ("val_acc", "test_acc"))):  # fmt: skip
        for key in keys:
            color, style, marker, label = CURVE_STYLES[key]
            x, y = _series(rows, key)
            ax.plot(x, y, style, color=color, marker=marker, markersize=4, linewidth=1.6,
                    label=label)  # fmt: skip
    for ax, name in ((loss_ax, "loss"), (acc_ax, "accuracy")):
        if early_stop is not None:
            ax.axvline(early_stop, color="grey", linewidth=0.8, linestyle="-.", label="early stop")
        ax.margins(x=0.03)  # an early stop at the last step stays visible
        ax.set_xlabel("step")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    loss_ax.set_title("loss", fontsize=10)
    acc_ax.set_title("accuracy", fontsize=10)
    fig.suptitle(title)
    return fig


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


def _as_runs(item: Rows | Sequence[Rows]) -> list[Rows]:
    """One run's rows, or several runs' (seeds): always a list of runs."""
    if item and isinstance(item[0], Mapping):
        return [item]  # type: ignore[list-item]
    return list(item)  # type: ignore[arg-type]


def plot_comparison(
    series: Sequence[tuple[str, Rows | Sequence[Rows]]],
    path: str | Path,
    title: str = "",
    colors: Sequence[str] | None = None,
):
    """Test accuracy and validation loss against the step, one colour and marker per series
    (``(label, rows)`` of one run, or ``(label, [rows, ...])`` of several seeds: mean, and a
    band of one standard deviation; :func:`comparison_figure`)."""
    return _save(comparison_figure(series, title, colors), path)


def comparison_figure(
    series: Sequence[tuple[str, Rows | Sequence[Rows]]],
    title: str = "",
    colors: Sequence[str] | None = None,
) -> Figure:
    fig = _figure(11, 4.2)
    acc_ax, loss_ax = fig.subplots(1, 2)
    for i, (label, item) in enumerate(series):
        runs = _as_runs(item)
        color = colors[i] if colors else CYCLE[i % len(CYCLE)]
        marker = MARKERS[i % len(MARKERS)]
        n = f" ({len(runs)} seeds)" if len(runs) > 1 else ""
        for ax, key in ((acc_ax, "test_acc"), (loss_ax, "val_loss")):
            steps, mean, std = band(runs, key)
            ax.plot(steps, mean, color=color, marker=marker, markersize=4, label=label + n)
            if len(runs) > 1:
                low = [m - s for m, s in zip(mean, std)]
                high = [m + s for m, s in zip(mean, std)]
                ax.fill_between(steps, low, high, color=color, alpha=0.18, linewidth=0)
    for ax, name in ((acc_ax, "test accuracy"), (loss_ax, "validation loss")):
        ax.set_xlabel("step")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    acc_ax.legend(fontsize=8)
    fig.suptitle(title)
    return fig
