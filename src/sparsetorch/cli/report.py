"""``sparsetorch report``: what a run did, or several runs side by side, or a checkpoint file.

sparsetorch report runs/<run>                       # summary + per-layer sparsity report
sparsetorch report --compare runs/a runs/b --plot cmp.png
sparsetorch report model.safetensors                # per-tensor table of a checkpoint
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sparsetorch.cli import Command

DEFAULT_PLOT = "comparison.png"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "path",
        metavar="PATH",
        nargs="?",
        type=Path,
        default=None,
        # "%(default).0s" prints nothing; it stops the CLI's formatter adding "(default: None)"
        help="a run dir, or a .safetensors checkpoint file%(default).0s",
    )
    parser.add_argument(
        "--compare",
        metavar="RUN_DIR",
        nargs="+",
        type=Path,
        default=argparse.SUPPRESS,
        help="print these run dirs (and PATH, if given) side by side and plot them",
    )
    parser.add_argument(
        "--plot",
        metavar="FILE",
        type=Path,
        default=argparse.SUPPRESS,
        help=f"where --compare writes its PNG plot (default: ./{DEFAULT_PLOT})",
    )


def run(args: argparse.Namespace) -> int:
    from sparsetorch.experiments.reporting import compare_runs, run_summary

    options = vars(args)
    path, plot, compare = options.get("path"), options.get("plot"), options.get("compare")
    if compare:
        runs = [path, *compare] if path is not None else list(compare)
        plot = plot or Path(DEFAULT_PLOT)
        print(compare_runs(runs, plot))
        print(f"comparison plot: {plot}")
        return 0
    if plot is not None:
        raise ValueError("--plot is only used with --compare")
    if path is None:
        raise ValueError("give a run dir or .safetensors file, or --compare RUN_DIR...")
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
    print(run_summary(path))
    return 0


COMMAND = Command(
    name="report",
    help="summarise a run dir, compare run dirs, or describe a .safetensors checkpoint",
    add_arguments=add_arguments,
    run=run,
    description="Print a run dir's summary and per-layer sparsity report; with --compare, "
    "print several runs side by side and plot them; given a .safetensors file, print its "
    "per-tensor table. Examples: sparsetorch report runs/RUN; sparsetorch report --compare "
    "runs/A runs/B --plot cmp.png; sparsetorch report model.safetensors",
)
