"""What a lottery run found, read back from its directory: a table per round (weights remaining,
test accuracy mean +- std over seeds, early-stop iteration) for the tickets and every control,
and the paper's figure (test accuracy against percent of weights remaining, log x axis, error
bands of one standard deviation over seeds).

Accuracies are test accuracies at the early-stopping iteration (the evaluation of minimum
validation loss), as Frankle & Carbin (2019) report them; the final-step accuracy of the
tickets is in the table too. Standard deviations are sample standard deviations (n - 1) over
seeds, 0 for one seed.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from sparsetorch.experiments.plots import _figure, _save
from sparsetorch.experiments.reporting import markdown_table, text_table
from sparsetorch.experiments.rundir import RESULT_FILE, read_json, write_json, write_text_atomic
from sparsetorch.lottery.config import CONTROLS
from sparsetorch.lottery.run_dir import TICKET, LotteryDir

BRANCHES = (TICKET, *CONTROLS)
SUMMARY_FILE = "summary.json"
TABLE_FILE = "lottery.md"
FIGURE_FILE = "lottery.png"
STATS = ("remaining", "es_acc", "es_step", "final_acc")


def collect(path: str | Path) -> list[dict[str, Any]]:
    """One record per finished round of every branch and seed."""
    run = LotteryDir(path)
    records = []
    for seed_dir in sorted(run.path.glob("seed*")):
        suffix = seed_dir.name.removeprefix("seed")
        if not suffix.isdigit():
            continue
        seed = int(suffix)
        for branch in BRANCHES:
            for round_dir in sorted(run.branch_dir(seed, branch).glob("round*")):
                result_file = round_dir / RESULT_FILE
                if not result_file.is_file():
                    continue
                result = read_json(result_file)
                round_ = int(round_dir.name.removeprefix("round"))
                kept = {name: v["numel"] for name, v in result["layers"].items()}
                if round_ > 0:  # kept weights are those the masks keep (rate-0 layers: all)
                    masks = run.load_masks(seed, round_, branch)
                    kept.update({name: int(m.sum()) for name, m in masks.items()})
                numel = sum(v["numel"] for v in result["layers"].values())
                records.append(
                    {
                        "branch": branch,
                        "seed": seed,
                        "round": round_,
                        "remaining": sum(kept.values()) / numel,
                        "es_acc": result["early_stop"]["test_acc"],
                        "es_step": result["early_stop"]["step"],
                        "final_acc": result["final"]["test_acc"],
                    }
                )
    return records


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def aggregate(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and std over seeds of every statistic, per (branch, round)."""
    groups: dict[tuple[str, int], list[dict]] = defaultdict(list)
    for rec in records:
        groups[(rec["branch"], rec["round"])].append(rec)
    rows = []
    for (branch, round_), recs in sorted(
        groups.items(), key=lambda kv: (BRANCHES.index(kv[0][0]), kv[0][1])
    ):
        row: dict[str, Any] = {
            "branch": branch,
            "round": round_,
            "seeds": sorted(r["seed"] for r in recs),
        }
        for key in STATS:
            row[key], row[key + "_std"] = mean_std([float(r[key]) for r in recs])
        rows.append(row)
    return rows


def _pm(row: dict | None, key: str, scale: float = 100.0, digits: int = 2) -> str:
    """``mean ± std`` (just the value for one seed)."""
    if row is None:
        return "-"
    mean = f"{scale * row[key]:.{digits}f}"
    if len(row["seeds"]) < 2:
        return mean
    return f"{mean} ± {scale * row[key + '_std']:.{digits}f}"


TABLE_HEADER = (
    "round",
    "weights remaining %",
    "ticket test acc % (early stop)",
    "early-stop step",
    "ticket test acc % (final)",
)


def table(rows: list[dict[str, Any]]) -> tuple[tuple[str, ...], list[list[str]]]:
    """Header and rows of the per-round table: one line per ticket round, one column (test
    accuracy at early stop) per control that was run."""
    by = {(r["branch"], r["round"]): r for r in rows}
    controls = [c for c in CONTROLS if any(r["branch"] == c for r in rows)]
    out = []
    for row in (r for r in rows if r["branch"] == TICKET):
        n = row["round"]
        out.append(
            [
                str(n),
                f"{100 * row['remaining']:.2f}",
                _pm(row, "es_acc"),
                _pm(row, "es_step", scale=1, digits=0),
                _pm(row, "final_acc"),
                *(_pm(by.get((c, n)), "es_acc") for c in controls),
            ]
        )
    return (*TABLE_HEADER, *(f"{c} test acc %" for c in controls)), out


def plot(rows: list[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """Test accuracy (early stop) and early-stop step against percent of weights remaining,
    log x axis running from dense (left) to sparse (right), one band per branch (+- 1 std)."""
    fig = _figure(11, 4.2)
    acc_ax, step_ax = fig.subplots(1, 2)
    styles = {
        TICKET: ("C0", "o", "winning ticket (IMP)"),
        "reinit": ("C3", "s", "random reinit"),
        "random-prune": ("C2", "^", "random pruning"),
    }
    for branch in BRANCHES:
        series = [r for r in rows if r["branch"] == branch]
        if not series:
            continue
        color, marker, label = styles[branch]
        x = [100 * r["remaining"] for r in series]
        for ax, key, scale in ((acc_ax, "es_acc", 100.0), (step_ax, "es_step", 1.0)):
            mean = [scale * r[key] for r in series]
            std = [scale * r[key + "_std"] for r in series]
            ax.plot(x, mean, color=color, marker=marker, markersize=4, label=label)
            ax.fill_between(
                x,
                [m - s for m, s in zip(mean, std)],
                [m + s for m, s in zip(mean, std)],
                color=color,
                alpha=0.2,
                linewidth=0,
            )
    dense = next((r for r in rows if r["branch"] == TICKET and r["round"] == 0), None)
    if dense is not None:
        acc_ax.axhline(
            100 * dense["es_acc"],
            color="grey",
            linestyle="--",
            linewidth=0.8,
            label="dense (round 0)",
        )
    seeds = max((len(r["seeds"]) for r in rows), default=0)
    lowest = min(100 * r["remaining"] for r in rows)
    ticks = [t for t in (100, 50, 20, 10, 5, 2, 1, 0.5, 0.2, 0.1) if t >= lowest / 1.5]
    for ax, ylabel in ((acc_ax, "test accuracy % (early stop)"), (step_ax, "early-stop step")):
        ax.set_xscale("log")
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.minorticks_off()
        ax.invert_xaxis()
        ax.set_xlabel("percent of weights remaining")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    acc_ax.legend(fontsize=8)
    spread = f"mean ± std over {seeds} seeds" if seeds > 1 else "1 seed"
    fig.suptitle(f"{title} ({spread})".strip())
    return _save(fig, path)


def write_summary(path: str | Path) -> dict[str, Any]:
    """Collect the finished rounds of a lottery run and write ``summary.json``, the table
    (``lottery.md``) and the figure (``lottery.png``). Returns the summary."""
    run = LotteryDir(path)
    config = run.read_config()
    rows = aggregate(collect(run.path))
    if not any(r["branch"] == TICKET for r in rows):
        raise ValueError(f"lottery run {str(run.path)!r} has no finished round yet")
    header, body = table(rows)
    model = config["hparams"]["model"]["name"]
    dataset = config["hparams"]["dataset"]["name"]
    lt = config["lottery"]
    title = f"{model} on {dataset}, rewind {lt['rewind']}, {lt['pattern']}"
    figure = plot(rows, run.path / FIGURE_FILE, title)
    text = (
        f"# Lottery tickets: {title}\n\n"
        f"Test accuracy in %, mean ± std over seeds; early stop = the evaluation of minimum "
        f"validation loss.\n\n{markdown_table(header, body)}\n\n![lottery]({FIGURE_FILE})\n"
    )
    write_text_atomic(run.path / TABLE_FILE, text)
    summary = {
        "rows": rows,
        "table": text_table(header, body),
        "figure": str(figure),
        "markdown": str(run.path / TABLE_FILE),
    }
    write_json(run.path / SUMMARY_FILE, {"rows": _finite(rows)})
    return summary


def _finite(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in r.items()}
        for r in rows
    ]


def report(path: str | Path) -> str:
    """What ``sparsetorch report`` prints for a lottery run: the table, and where the table
    and the figure were (re)written."""
    summary = write_summary(path)
    return f"{summary['table']}\ntable: {summary['markdown']}\nfigure: {summary['figure']}"
