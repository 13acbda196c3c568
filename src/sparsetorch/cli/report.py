"""``sparsetorch report``: what a run did, or several runs side by side, or a checkpoint file.

sparsetorch report runs/<run>                       # summary + per-layer sparsity report
sparsetorch report --compare runs/a runs/b          # table + runs/a/comparison.png
sparsetorch report --compare runs/ --plot cmp.png   # every run in runs/, seeds aggregated
sparsetorch report --compare runs/lottery-a runs/lottery-b   # lottery runs side by side
sparsetorch report model.safetensors                # per-tensor table of a checkpoint
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sparsetorch.cli import Command

COMPARISON_PNG = "comparison.png"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "path",
        metavar="PATH",
        nargs="?",
        type=Path,
        default=None,
        # "%(default).0s" prints nothing; it stops the CLI's formatter adding "(default: None)"
        help="a run dir, a lottery run dir, or a .safetensors checkpoint file%(default).0s",
    )
    parser.add_argument(
        "--compare",
        metavar="DIR",
        nargs="+",
        type=Path,
        default=argparse.SUPPRESS,
        help="print these runs (and PATH, if given) side by side and plot them: run dirs, "
        "lottery run dirs, or directories holding them (runs/); runs that differ only in "
        "their seeds are one row, mean ± std",
    )
    parser.add_argument(
        "--plot",
        metavar="FILE",
        type=Path,
        default=argparse.SUPPRESS,
        help=f"where --compare writes its PNG figure (default: {COMPARISON_PNG} in the one "
        "directory of runs given, else in the first run's directory)",
    )


def _compare(paths: list[Path], plot: Path | None) -> str:
    from sparsetorch.experiments.compare import default_plot_path, expand, is_run_dir
    from sparsetorch.lottery.run_dir import is_lottery_dir

    def member(path: Path) -> bool:
        return is_run_dir(path) or is_lottery_dir(path)

    found = expand(paths, member)
    lotteries = [p for p in found if is_lottery_dir(p)]
    if lotteries and len(lotteries) != len(found):
        plain = [str(p) for p in found if not is_lottery_dir(p)]
        raise ValueError(
            f"cannot compare lottery runs with plain run dirs ({', '.join(plain[:3])}): "
            "compare each kind on its own"
        )
    plot = plot or default_plot_path(paths, found)
    if lotteries:
        from sparsetorch.lottery.compare import compare_lotteries

        text, figure = compare_lotteries(lotteries, plot)
    else:
        from sparsetorch.experiments.compare import compare_runs

        text, figure = compare_runs(found, plot)
    return f"{text}\ncomparison plot: {figure}"


def run(args: argparse.Namespace) -> int:
    options = vars(args)
    path, plot, compare = options.get("path"), options.get("plot"), options.get("compare")
    if compare:
        print(_compare([path, *compare] if path is not None else list(compare), plot))
        return 0
    if plot is not None:
        raise ValueError("--plot is only used with --compare")
    if path is None:
        raise ValueError("give a run dir or .safetensors file, or --compare DIR...")
    if not path.exists():
        raise FileNotFoundError(f"{str(path)!r} does not exist")
    if path.is_file():
        if path.suffix != ".safetensors":
            raise ValueError(f"{str(path)!r} is a file but not a .safetensors checkpoint")
        from sparsetorch.checkpoint import report_file

        print(report_file(path))
        return 0
    from sparsetorch.lottery.run_dir import is_lottery_dir

    if is_lottery_dir(path):  # a lottery run: its per-round table and figure
        from sparsetorch.lottery.summary import report

        print(report(path))
        return 0
    from sparsetorch.experiments.compare import is_run_dir

    if not is_run_dir(path):
        inside = [p for p in sorted(path.iterdir()) if is_run_dir(p) or is_lottery_dir(p)]
        if inside:
            raise ValueError(
                f"{str(path)!r} is not a run dir but holds {len(inside)}: compare them with "
                f"sparsetorch report --compare {path}"
            )
    from sparsetorch.experiments.reporting import run_summary

    print(run_summary(path))
    return 0


COMMAND = Command(
    name="report",
    help="summarise a run dir, compare runs, or describe a .safetensors checkpoint",
    add_arguments=add_arguments,
    run=run,
    description="Print a run dir's summary and per-layer sparsity report; with --compare, "
    "print several runs (run dirs, lottery runs, or directories of them) side by side, seeds "
    "aggregated as mean ± std, and plot them; given a .safetensors file, print its "
    "per-tensor table. Examples: sparsetorch report runs/RUN; sparsetorch report --compare "
    "runs/A runs/B; sparsetorch report --compare runs/ --plot cmp.png; sparsetorch report "
    "model.safetensors",
)
