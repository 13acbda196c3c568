"""``sparsetorch lottery``: find lottery tickets by iterative magnitude pruning with rewinding.

    sparsetorch lottery --model lenet300 --dataset fashion-mnist --rounds 10 --prune-rate 0.2 \\
        --layer-rate output=0.1 --rewind init --seeds 0,1,2 --controls reinit,random-prune \\
        --epochs 3 --out runs/
    sparsetorch report runs/lottery-lenet300-<hash>      # the table again, and the figure

The training flags (model, dataset, optimizer, epochs...) are those of ``sparsetorch train``.
Running the same command again reuses every finished round and resumes an interrupted one;
more --rounds, --seeds or --controls extend the same run.
"""

from __future__ import annotations

import argparse

from sparsetorch.cli import Command

DESCRIPTION = (
    "Lottery tickets (Frankle & Carbin 2019): train dense, then each round prune --prune-rate "
    "of the remaining weights by magnitude, rewind the survivors to their initial values (or "
    "to step K: late rewinding) and retrain with the same data order. Controls branch from the "
    "tickets: reinit (same masks, fresh init) and random-prune (random masks of the same "
    "per-layer sparsity). Prints a table per round and writes the accuracy-vs-sparsity figure. "
    "Running the same command again reuses finished rounds and resumes an interrupted one; a "
    "second process on a lottery that is running is refused."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from sparsetorch.experiments.flags import add_config_arguments, add_hparam_arguments
    from sparsetorch.lottery.config import IMPConfig

    add_config_arguments(parser.add_argument_group("lottery"), IMPConfig, "lottery")
    run = parser.add_argument_group("run")
    run.add_argument("--out", metavar="DIR", default="runs", help="parent of the lottery run dir")
    run.add_argument(
        "--run-dir",
        metavar="DIR",
        default=argparse.SUPPRESS,
        help="the exact lottery run dir instead of a hashed one under --out (an existing one "
        "is resumed or extended; refused when started with other hparams)",
    )
    run.add_argument(
        "--config",
        metavar="FILE",
        default=argparse.SUPPRESS,
        help="JSON or YAML training hparams (a run's hparams.json works); flags override it",
    )
    run.add_argument("--device", default="cpu", help="torch device to train on (cpu, cuda)")
    run.add_argument(
        "--threads",
        type=int,
        default=argparse.SUPPRESS,
        metavar="N",
        help="torch intra-op CPU threads (default: torch's choice)",
    )
    run.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=argparse.SUPPRESS,
        help="progress bars (default: only on a terminal and outside CI)",
    )
    add_hparam_arguments(parser, groups=("model", "dataset", "training"), skip=("training.seed",))


def run(args: argparse.Namespace) -> int:
    from sparsetorch.experiments.flags import given_config, hparams_from_args
    from sparsetorch.lottery import IMP, IMPConfig

    options = vars(args)
    hp = hparams_from_args(args, options.get("config"))
    lottery = IMPConfig(**given_config(args, "lottery"))
    threads = options.get("threads")
    if threads is not None:
        if threads < 1:
            raise ValueError(f"--threads must be >= 1, got {threads}")
        import torch

        torch.set_num_threads(threads)
    run_dir = options.get("run_dir")
    where = {"run_dir": run_dir} if run_dir else {"out_dir": args.out}
    imp = IMP(hp, lottery, **where, device=args.device, progress=options.get("progress"), log=print)
    try:
        summary = imp.run()
    except KeyboardInterrupt:
        print(f"interrupted: run the same command again to resume {imp.path}")
        return 130
    print(f"{summary['table']}\ntable: {summary['markdown']}\nfigure: {summary['figure']}")
    return 0


COMMAND = Command(
    name="lottery",
    help="find lottery tickets: iterative magnitude pruning with rewinding, plus controls",
    add_arguments=add_arguments,
    run=run,
    description=DESCRIPTION,
)
