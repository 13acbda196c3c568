"""Several runs side by side: ``sparsetorch report --compare A B ...`` or ``--compare runs/``.

Run dirs that differ only in their seeds (``training.seed``, ``training.data_seed``) are one
group: the table gives each number as mean ± std over the group's seeds (sample standard
deviation, n - 1; the plain value for one seed) and the figure draws the mean with a band of one
standard deviation. A group is labelled by the hparams that tell it from the other groups
(``rigl``, ``sparsity 0.9``, ``lr 0.003``), never by its hash.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sparsetorch.experiments.hparams import Hparams
from sparsetorch.experiments.result import early_stop_row
from sparsetorch.experiments.rundir import RunDir

SEED_KEYS = ("training.seed", "training.data_seed")
COMPARISON_PNG = "comparison.png"


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    values = [float(v) for v in values]
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def pm(values: Sequence[float], scale: float = 1.0, digits: int = 4) -> str:
    """``mean ± std`` of ``values`` times ``scale`` (just the value for one)."""
    mean, std = mean_std(values)
    if len(values) < 2:
        return f"{scale * mean:.{digits}f}"
    return f"{scale * mean:.{digits}f} ± {scale * std:.{digits}f}"


@dataclass
class Run:
    """One run dir, read back: hparams, identity, metrics."""

    path: Path
    hparams: Hparams
    identity: dict[str, Any]
    metrics: list[dict[str, Any]]
    complete: bool
    wall_s: float = 0.0  # a finished run's whole time (its result's), else its last evaluation's

    @classmethod
    def read(cls, path: str | Path) -> Run:
        run = RunDir(path)
        if not run.hparams_file.is_file():
            raise FileNotFoundError(f"{str(run.path)!r} is not a run dir (no hparams.json)")
        metrics = run.read_metrics()
        if not metrics:
            raise ValueError(f"run dir {str(run.path)!r} has no metrics yet")
        hp = run.hparams()
        identity = run.run_info()["identity"] if run.run_file.is_file() else hp.identity()
        complete = run.is_complete()
        wall = metrics[-1]["wall_s"]
        if complete:  # as `sparsetorch report RUN` says it
            wall = run.read_result().get("wall_s", wall)
        return cls(run.path, hp, identity, metrics, complete, wall)


@dataclass
class Group:
    """Runs that differ only in their seeds."""

    key: tuple
    runs: list[Run] = field(default_factory=list)
    label: str = ""

    @property
    def hparams(self) -> Hparams:
        return self.runs[0].hparams

    def values(self, pick: Any) -> list[float]:
        return [float(pick(run)) for run in self.runs]


def is_run_dir(path: Path) -> bool:
    return RunDir(path).hparams_file.is_file()


def expand(paths: Sequence[str | Path], is_member=is_run_dir) -> list[Path]:
    """The run dirs named by ``paths``: a run dir itself, or every run dir directly inside a
    directory (``runs/``), in name order. One error names a path that holds none."""
    out: list[Path] = []
    for path in map(Path, paths):
        if not path.exists():
            raise FileNotFoundError(f"{str(path)!r} does not exist")
        if is_member(path):
            out.append(path)
            continue
        inside = (
            sorted(p for p in path.iterdir() if p.is_dir() and is_member(p))
            if path.is_dir()
            else []
        )
        if not inside:
            raise FileNotFoundError(
                f"{str(path)!r} is not a run dir (no hparams.json) and holds none"
            )
        out += inside
    return list(dict.fromkeys(out))


def group_runs(runs: Sequence[Run]) -> list[Group]:
    """Runs grouped by their identity without the seeds, in first-seen order, labelled."""
    groups: dict[tuple, Group] = {}
    for run in runs:
        key = tuple(sorted((k, repr(v)) for k, v in run.identity.items() if k not in SEED_KEYS))
        key += ((run.hparams.model.name, run.hparams.dataset.name),)
        groups.setdefault(key, Group(key)).runs.append(run)
    out = list(groups.values())
    for group, label in zip(out, labels(out)):
        group.label = label
    keys = _differing(out)
    return sorted(out, key=lambda g: [_order(_value(g, k)) for k in keys])


def _order(value: Any) -> tuple:
    """A sort key that puts numbers in numeric order, None first, anything else by text."""
    if value is None:
        return (0, 0.0, "")
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (1, float(value), "")
    return (2, 0.0, repr(value))


def _differing(groups: Sequence[Group]) -> list[str]:
    """The identity keys whose values differ between the groups: the method first, the given
    inputs last."""
    keys = sorted({k for g in groups for run in g.runs for k in run.identity} - set(SEED_KEYS))
    keys += ["model.name", "dataset.name"]
    differ = [k for k in dict.fromkeys(keys) if len({repr(_value(g, k)) for g in groups}) > 1]
    return sorted(differ, key=lambda k: (k != "sparsity.method", k.startswith("inputs."), k))


def _value(group: Group, key: str) -> Any:
    """The value of identity key ``key`` ("group.field" or "inputs.NAME") in ``group``."""
    section, _, name = key.partition(".")
    if section == "inputs":
        return group.runs[0].identity.get(key)
    return getattr(getattr(group.hparams, section), name)


def _words(key: str, value: Any) -> str:
    """``sparsity.method`` rigl -> ``rigl``; ``training.lr`` 0.003 -> ``lr 0.003``."""
    name = key.rpartition(".")[2]
    if key == "sparsity.method":
        return str(value)
    if key.startswith("inputs."):
        return f"given {name}" if value is not None else ""
    if isinstance(value, dict):
        value = " ".join(f"{k}={v}" for k, v in sorted(value.items())) or "default"
    elif isinstance(value, list | tuple):
        value = ",".join(map(str, value))
    elif isinstance(value, float):
        value = f"{value:g}"
    return f"{name.replace('_', ' ')} {value}"


def labels(groups: Sequence[Group]) -> list[str]:
    """A label per group from the hparams whose values differ between the groups (the method
    first), e.g. ``rigl, sparsity 0.9``; the model and method for a single group."""
    differ = _differing(groups)
    out = []
    for g in groups:
        parts = [p for p in (_words(k, _value(g, k)) for k in differ) if p]
        out.append(", ".join(parts) or f"{g.hparams.model.name} {g.hparams.sparsity.method}")
    return out


def title(groups: Sequence[Group]) -> str:
    """``lenet300 on fashion-mnist, sparsity 0.9 (mean ± std over 3 seeds)``: what the groups
    share, and how many seeds each has."""
    hps = [g.hparams for g in groups]
    models = sorted({hp.model.name for hp in hps})
    datasets = sorted({hp.dataset.name for hp in hps})
    text = f"{', '.join(models)} on {', '.join(datasets)}"
    sparsities = {hp.sparsity.sparsity for hp in hps}
    if len(sparsities) == 1 and (s := sparsities.pop()) > 0:
        text += f", sparsity {s:g}"
    seeds = sorted({len(g.runs) for g in groups})
    if seeds == [1]:
        return f"{text} (1 seed)"
    n = seeds[0] if len(seeds) == 1 else f"{seeds[0]}-{seeds[-1]}"
    return f"{text} (mean ± std over {n} seeds)"


HEADER = ("group", "seeds", "model", "method", "sparsity", "steps", "final test acc",
          "early-stop step", "early-stop test acc", "best val acc", "wall s")  # fmt: skip


def table_rows(groups: Sequence[Group]) -> list[list[str]]:
    rows = []
    for g in groups:
        hp = g.hparams
        unfinished = sum(not run.complete for run in g.runs)
        rows.append([
            g.label + (f" ({unfinished} unfinished)" if unfinished else ""),
            str(len(g.runs)), hp.model.name, hp.sparsity.method,
            pm(g.values(lambda r: r.metrics[-1]["sparsity"]), digits=3),
            pm(g.values(lambda r: r.metrics[-1]["step"]), digits=0),
            pm(g.values(lambda r: r.metrics[-1]["test_acc"])),
            pm(g.values(lambda r: early_stop_row(r.metrics)["step"]), digits=0),
            pm(g.values(lambda r: early_stop_row(r.metrics)["test_acc"])),
            pm(g.values(lambda r: max(m["val_acc"] for m in r.metrics))),
            pm(g.values(lambda r: r.wall_s), digits=1),
        ])  # fmt: skip
    return rows


def default_plot_path(given: Sequence[str | Path], runs: Sequence[Path]) -> Path:
    """Where the comparison figure goes when no ``--plot`` is given: into the one parent
    directory given (``--compare runs/``), else into the first run's directory."""
    if len(given) == 1 and Path(given[0]) != runs[0]:
        return Path(given[0]) / COMPARISON_PNG
    return runs[0] / COMPARISON_PNG


def compare_runs(
    paths: Sequence[str | Path], plot_path: str | Path | None = None
) -> tuple[str, Path | None]:
    """The side-by-side table of the runs named by ``paths`` (run dirs or directories of run
    dirs), seeds aggregated, and the comparison figure written to ``plot_path`` (None: no
    figure). Returns (table text, figure path)."""
    from sparsetorch.experiments.plots import method_color, plot_comparison
    from sparsetorch.experiments.reporting import text_table

    runs, empty = [], []
    for path in expand(paths):
        if RunDir(path).read_metrics():
            runs.append(Run.read(path))
        else:
            empty.append(Path(path).name)
    if not runs:
        raise ValueError(f"no run among {[str(p) for p in paths]} has metrics yet")
    groups = group_runs(runs)
    text = text_table(HEADER, table_rows(groups))
    if empty:
        text += f"\n\nnot compared (no evaluation yet): {', '.join(empty)}"
    members = [f"  {g.label}: {', '.join(run.path.name for run in g.runs)}" for g in groups]
    text += "\n\nrun dirs per group:\n" + "\n".join(members)
    figure = None
    if plot_path is not None:
        methods = [g.hparams.sparsity.method for g in groups]
        colors = [method_color(m) for m in methods] if len(set(methods)) == len(groups) else None
        series = [(g.label, [run.metrics for run in g.runs]) for g in groups]
        figure = plot_comparison(series, plot_path, title(groups), colors)
    return text, figure
