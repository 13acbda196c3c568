"""Lottery runs side by side: ``sparsetorch report --compare runs/lottery-a runs/lottery-b``.

One table line per round of every run's tickets (weights remaining, test accuracy at early
stop as mean ± std over its seeds, and each control), and one figure: test accuracy against
percent of weights remaining, a colour per lottery run, its tickets solid with a band of one
standard deviation, its controls dashed. Runs are labelled by the settings that tell them apart
(``rewind 40``, ``pattern block4x4``), never by their hash.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sparsetorch.experiments.compare import _words
from sparsetorch.experiments.plots import CYCLE, _figure, _save
from sparsetorch.experiments.reporting import text_table
from sparsetorch.lottery.config import CONTROLS
from sparsetorch.lottery.run_dir import TICKET, LotteryDir
from sparsetorch.lottery.summary import _pm, aggregate, collect, percent_ticks

CONTROL_STYLES = {"reinit": ("--", "s"), "random-prune": (":", "^")}


def _value(config: dict[str, Any], key: str) -> Any:
    """Identity key ``lottery.X`` or ``group.field`` of a lottery run's ``lottery.json``."""
    section, _, name = key.partition(".")
    if section == "lottery":
        return config["lottery"].get(name)
    return config["hparams"].get(section, {}).get(name)


def lottery_labels(configs: Sequence[dict[str, Any]]) -> list[str]:
    keys = {k for c in configs for k in c.get("identity", {})} | {"model.name", "dataset.name"}
    differ = sorted(k for k in keys if len({repr(_value(c, k)) for c in configs}) > 1)
    out = []
    for c in configs:
        parts = [_words(k, _value(c, k)) for k in differ]
        out.append(", ".join(parts) or f"rewind {c['lottery']['rewind']}")
    return out


def compare_lotteries(
    paths: Sequence[str | Path], plot_path: str | Path | None = None
) -> tuple[str, Path | None]:
    """The per-round table of several lottery runs and their figure (None: no figure)."""
    runs = [LotteryDir(p) for p in paths]
    configs = [run.read_config() for run in runs]
    rowsets = [aggregate(collect(run.path)) for run in runs]
    for run, rows in zip(runs, rowsets):
        if not any(r["branch"] == TICKET for r in rows):
            raise ValueError(f"lottery run {str(run.path)!r} has no finished round yet")
    names = lottery_labels(configs)
    controls = [c for c in CONTROLS if any(r["branch"] == c for rows in rowsets for r in rows)]
    header = ("lottery run", "seeds", "round", "weights remaining %",
              "ticket test acc % (early stop)", *(f"{c} test acc %" for c in controls))  # fmt: skip
    body = []
    for name, rows in zip(names, rowsets):
        by = {(r["branch"], r["round"]): r for r in rows}
        for row in (r for r in rows if r["branch"] == TICKET):
            n = row["round"]
            body.append([
                name, str(len(row["seeds"])), str(n), f"{100 * row['remaining']:.2f}",
                _pm(row, "es_acc"), *(_pm(by.get((c, n)), "es_acc") for c in controls),
            ])  # fmt: skip
    members = "\n".join(f"  {name}: {run.path}" for name, run in zip(names, runs))
    text = f"{text_table(header, body)}\n\nlottery runs:\n{members}"
    figure = None if plot_path is None else plot_lotteries(names, configs, rowsets, plot_path)
    return text, figure


def plot_lotteries(
    names: Sequence[str],
    configs: Sequence[dict[str, Any]],
    rowsets: Sequence[list[dict[str, Any]]],
    path: str | Path,
    title: str | None = None,
) -> Path:
    """Test accuracy against percent of weights remaining of several lottery runs; the title
    names the models, data sets and seeds (``title`` replaces what precedes the seeds)."""
    fig = _figure(7.5, 4.8)
    ax = fig.subplots()
    lowest = 100.0
    for i, (name, rows) in enumerate(zip(names, rowsets)):
        color = CYCLE[i % len(CYCLE)]
        for branch in (TICKET, *CONTROLS):
            series = [r for r in rows if r["branch"] == branch]
            if not series:
                continue
            x = [100 * r["remaining"] for r in series]
            mean = [100 * r["es_acc"] for r in series]
            std = [100 * r["es_acc_std"] for r in series]
            lowest = min(lowest, *x)
            style, marker = ("-", "o") if branch == TICKET else CONTROL_STYLES[branch]
            n = max(len(r["seeds"]) for r in series)
            label = (name if branch == TICKET else f"{name}: {branch}") + (
                f" ({n} seeds)" if n > 1 else ""
            )
            ax.plot(x, mean, style, color=color, marker=marker, markersize=4, label=label)
            if n > 1:
                low = [m - s for m, s in zip(mean, std)]
                high = [m + s for m, s in zip(mean, std)]
                alpha = 0.2 if branch == TICKET else 0.08
                ax.fill_between(x, low, high, color=color, alpha=alpha, linewidth=0)
    ax.set_xscale("log")
    ticks = percent_ticks(lowest)
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.minorticks_off()
    ax.invert_xaxis()
    ax.set_xlabel("percent of weights remaining")
    ax.set_ylabel("test accuracy % (early stop)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    models = sorted({c["hparams"]["model"]["name"] for c in configs})
    datasets = sorted({c["hparams"]["dataset"]["name"] for c in configs})
    seeds = sorted({len(r["seeds"]) for rows in rowsets for r in rows})
    spread = (
        "1 seed"
        if seeds == [1]
        else f"mean ± std over {seeds[0]} seeds"
        if len(seeds) == 1
        else "mean ± std over each run's seeds"
    )
    title = title or f"lottery tickets: {', '.join(models)} on {', '.join(datasets)}"
    fig.suptitle(f"{title} ({spread})")
    return _save(fig, path)
