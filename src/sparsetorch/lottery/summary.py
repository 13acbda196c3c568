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
from collections import defaultdict
from itertools import pairwise
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from sparsetorch.experiments.compare import mean_std
from sparsetorch.experiments.plots import _figure, _save
from sparsetorch.experiments.reporting import markdown_table, text_table
from sparsetorch.experiments.rundir import RESULT_FILE, read_json, write_json, write_text_atomic
from sparsetorch.lottery.config import CONTROLS
from sparsetorch.lottery.run_dir import TICKET, LotteryDir

BRANCHES = (TICKET, *CONTROLS)
SUMMARY_FILE = "summary.json"
TABLE_FILE = "lottery.md"
FIGURE_FILE = "lottery.png"
STATS = ("remaining", "es_acc", "es_step", "final_acc", "total_steps")


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
                        "total_steps": result["total_steps"],
                        "eval_steps": _eval_steps(round_dir),
                    }
                )
    return records


def _eval_steps(round_dir: Path) -> list[int]:
    """The steps a round was evaluated at (the resolution of its early-stop step)."""
    from sparsetorch.experiments.rundir import RunDir

    return [row["step"] for row in RunDir(round_dir).read_metrics()]


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
            "eval_steps": sorted(set().union(*(r.get("eval_steps", ()) for r in recs))),
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


def percent_ticks(lowest: float) -> list[float]:
    """Ticks of a log axis of percent of weights remaining, from 100 down to ``lowest``."""
    return [t for t in (100, 50, 20, 10, 5, 2, 1, 0.5, 0.2, 0.1) if t >= lowest / 1.5]


STYLES = {  # branch: colour, marker, legend
    TICKET: ("tab:blue", "o", "winning ticket (IMP)"),
    "reinit": ("tab:red", "s", "random reinit"),
    "random-prune": ("tab:green", "^", "random pruning"),
}


def _band(ax: Any, x: list, mean: list, std: list, color: str, low: float, high: float) -> None:
    """A band of one standard deviation, clipped to what the quantity can be (an error bar
    for a single point)."""
    if len(x) == 1:
        lo, hi = max(low, mean[0] - std[0]), min(high, mean[0] + std[0])
        ax.errorbar(x, mean, yerr=[[mean[0] - lo], [hi - mean[0]]], color=color, capsize=3)
        return
    lower = [min(high, max(low, m - s)) for m, s in zip(mean, std)]
    upper = [min(high, max(low, m + s)) for m, s in zip(mean, std)]
    ax.fill_between(x, lower, upper, color=color, alpha=0.2, linewidth=0)


def plot(rows: list[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """Test accuracy (early stop) and early-stop step against percent of weights remaining,
    log x axis running from dense (left) to sparse (right), one band per branch (+- 1 std,
    clipped to [0, 100] % and to the run's length). The early-stop panel spans the whole run
    (0 to its last step) and names the evaluation period, the resolution of an early stop: a
    flat line at the last step means the validation loss still fell at the end."""
    return _save(figure(rows, title), path)


def figure(rows: list[dict[str, Any]], title: str = "") -> Figure:
    """The figure of :func:`plot`."""
    fig = _figure(11, 4.4)
    acc_ax, step_ax = fig.subplots(1, 2)
    length = max((r["total_steps"] for r in rows if "total_steps" in r), default=None)
    for branch in BRANCHES:
        series = [r for r in rows if r["branch"] == branch]
        if not series:
            continue
        color, marker, label = STYLES[branch]
        x = [100 * r["remaining"] for r in series]
        several = max(len(r["seeds"]) for r in series) > 1
        for ax, key, scale, high in (
            (acc_ax, "es_acc", 100.0, 100.0),
            (step_ax, "es_step", 1.0, float(length or "inf")),
        ):
            mean = [scale * r[key] for r in series]
            std = [scale * r[key + "_std"] for r in series]
            if all(math.isnan(m) for m in mean):  # not recorded (a redrawn table)
                continue
            ax.plot(x, mean, color=color, marker=marker, markersize=4, label=label)
            if several:
                _band(ax, x, mean, std, color, 0.0, high)
    dense = next((r for r in rows if r["branch"] == TICKET and r["round"] == 0), None)
    if dense is not None:
        acc_ax.axhline(
            100 * dense["es_acc"],
            color="grey",
            linestyle="--",
            linewidth=0.8,
            label="dense (round 0)",
        )
    if length:
        step_ax.set_ylim(0, length * 1.04)
        step_ax.axhline(length, color="grey", linewidth=0.8, linestyle=":", label="end of run")
        # the evaluation period of each round: its largest gap (the last one may be shorter)
        steps = [r.get("eval_steps", []) for r in rows]
        gaps = sorted({max(b - a for a, b in pairwise(s)) for s in steps if len(s) > 1})
        if gaps:
            period = f"{gaps[0]}" if len(gaps) == 1 else f"{gaps[0]}-{gaps[-1]}"
            step_ax.set_title(f"evaluated every {period} steps", fontsize=9)
    seeds = max((len(r["seeds"]) for r in rows), default=0)
    ticks = percent_ticks(min(100 * r["remaining"] for r in rows))
    for ax, ylabel in ((acc_ax, "test accuracy % (early stop)"), (step_ax, "early-stop step")):
        ax.set_xscale("log")
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.minorticks_off()
        ax.invert_xaxis()
        ax.set_xlabel("percent of weights remaining")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    acc_ax.legend(fontsize=8)
    step_ax.legend(fontsize=8, loc="lower left")
    spread = f"mean ± std over {seeds} seeds" if seeds > 1 else "1 seed"
    fig.suptitle(f"{title} ({spread})".strip())
    return fig


class LotterySummary(dict):
    """What a lottery run found (a dict: ``rows``, ``table``, ``figure``, ``markdown``,
    ``title``, ``header``, ``body``); a notebook cell ending in one shows its table and figure
    (``_repr_html_``, ``_repr_markdown_``)."""

    def __repr__(self) -> str:
        return f"LotterySummary({self['title']})\n{self['table']}"

    def _repr_markdown_(self) -> str:
        return (
            f"**Lottery tickets: {self['title']}** (test accuracy %, mean ± std over seeds)"
            f"\n\n{markdown_table(self['header'], self['body'])}\n\nfigure: `{self['figure']}`"
        )

    def _repr_html_(self) -> str:
        import html

        from sparsetorch.experiments.result import png_data_uri
        from sparsetorch.model_report import html_table

        parts = [
            f"<p><b>Lottery tickets: {html.escape(self['title'])}</b> (test accuracy %, "
            "mean ± std over seeds)</p>",
            html_table(list(self["header"]), self["body"], left=set()),
        ]
        figure = Path(self["figure"])
        if figure.is_file():
            parts.append(f'<img src="{png_data_uri(figure)}" style="max-width:100%">')
        return "\n".join(parts)


def write_summary(path: str | Path) -> LotterySummary:
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
    summary = LotterySummary(
        rows=rows,
        table=text_table(header, body),
        figure=str(figure),
        markdown=str(run.path / TABLE_FILE),
        title=title,
        header=list(header),
        body=body,
    )
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
