"""``sparsetorch demo``: find a lottery ticket in LeNet-300-100 on Fashion-MNIST, in minutes.

A short lottery-ticket run (``st.lottery.IMP``): train the dense network one epoch (Adam 1.2e-3,
batch 60), then 4 rounds that each prune half of the remaining hidden-layer weights (a quarter
of the output layer's), rewind the survivors to their initial values and retrain; beside each
ticket, the random-reinitialisation control trains the same masks from a fresh init. Prints one
line per round, the per-round table (ticket vs control), where the table and the figure are, and
the per-layer report of the sparsest ticket (density, bytes in its best sparse format, FLOPs).
Runs on one CPU thread (an MLP this small gains nothing from more; idle threads spinning on a
busy machine cost several times the CPU time). Running it again reuses the finished rounds.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sparsetorch.cli import Command

if TYPE_CHECKING:  # the command line is built without torch
    from sparsetorch.data import Dataset

ROUNDS, RATE, OUTPUT_RATE, EVAL_EVERY = 4, 0.5, 0.25, 250


def run_demo(
    data: Dataset,
    *,
    rounds: int = ROUNDS,
    epochs: int = 1,
    seed: int = 0,
    out_dir: str | Path = "runs/demo",
    progress: bool | None = None,
    out: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the demo's lottery (on ``data``) and print through ``out``; returns the summary
    (``rows``, ``table``, ``markdown``, ``figure``) plus ``report``, the ticket's report."""
    import torch

    from sparsetorch.experiments import Hparams
    from sparsetorch.experiments.runner import load_run
    from sparsetorch.lottery import IMP, IMPConfig
    from sparsetorch.model_report import report

    for name, value in (("rounds", rounds), ("epochs", epochs)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"--{name} must be an int >= 1, got {value!r}")
    hp = Hparams()
    hp.dataset.name = data.name
    hp.training.epochs = epochs
    hp.training.eval_every = EVAL_EVERY
    lottery = IMPConfig(
        rounds=rounds,
        prune_rate=RATE,
        layer_rates={"output": OUTPUT_RATE},
        seeds=(seed,),
        controls=("reinit",),
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        imp = IMP(hp, lottery, out_dir=out_dir, dataset=data, progress=progress, log=out)
        out(
            f"Lottery tickets in LeNet-300-100 on {data.name} ({len(data.train):,} training "
            f"images): {rounds} round{'s' if rounds != 1 else ''} pruning {RATE:.0%} of the remaining hidden weights "
            f"({OUTPUT_RATE:.0%} of the output layer's), {epochs} epoch(s) per round, rewind "
            f"to init, random-reinit control; run dir {imp.path}\n"
        )
        summary = imp.run()
        ticket = load_run(imp.dir.round_dir(seed, rounds)).model
        summary["report"] = report(ticket.cpu(), input_shape=(1, *data.input_shape))
    finally:
        torch.set_num_threads(threads)
    out(f"\n{summary['table']}\n")
    out(f"table:  {summary['markdown']}\nfigure: {summary['figure']}\n")
    out(f"The round-{rounds} ticket, layer by layer (bytes in its smallest format):")
    out(str(summary["report"]))
    return summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="pruning rounds (>= 1)")
    parser.add_argument("--epochs", type=int, default=1, help="training epochs per round (>= 1)")
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the initialisation and the data order"
    )
    parser.add_argument("--out", default="runs/demo", help="parent of the lottery run dir")
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=argparse.SUPPRESS,
        help="progress bars (default: only on a terminal and outside CI)",
    )
    parser.add_argument(
        "--data-dir",
        default=argparse.SUPPRESS,
        help="directory with the four Fashion-MNIST IDX files (.gz or not); default: "
        "$SPARSETORCH_FASHION_MNIST or the Debian package dataset-fashion-mnist",
    )


def run(args: argparse.Namespace) -> int:
    from sparsetorch.data import load

    options = vars(args)
    run_demo(
        load("fashion-mnist", data_dir=options.get("data_dir")),
        rounds=args.rounds,
        epochs=args.epochs,
        seed=args.seed,
        out_dir=args.out,
        progress=options.get("progress"),
    )
    return 0


COMMAND = Command(
    name="demo",
    help="find a lottery ticket in LeNet-300-100 on Fashion-MNIST (a few minutes on a CPU)",
    add_arguments=add_arguments,
    run=run,
    description=__doc__.split("\n\n")[1].replace("``", ""),
)
