"""``sparsetorch train``: one training run in a hashed run directory.

    sparsetorch train --model lenet300 --dataset fashion-mnist --epochs 5 --seed 0 --out runs/
    sparsetorch train --config runs/<run>/hparams.json --lr 3e-3      # config file, flags win

Every hyperparameter flag comes from the hparams dataclasses (sparsetorch.experiments.hparams).
Running the same command again reuses the finished run; an interrupted run resumes from its
last checkpoint.
"""

from __future__ import annotations

import argparse
import json

from sparsetorch.cli import Command
from sparsetorch.experiments.flags import add_hparam_arguments, hparams_from_args

DESCRIPTION = (
    "Train one run in a hashed run directory: running the same command again reuses the "
    "finished run, an interrupted run resumes from its last checkpoint, and a second process "
    "on a run that is training is refused. Every hparams "
    "flag can also come from --config (flags win). Example: sparsetorch train --model "
    "lenet300 --dataset fashion-mnist --epochs 5 --seed 0 --out runs/"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # defaults that need words, not values, are SUPPRESSed (read with vars(args).get)
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=argparse.SUPPRESS,
        help="JSON or YAML hparams file (a run's hparams.json works); flags override it",
    )
    parser.add_argument("--out", metavar="DIR", default="runs", help="parent of the run dirs")
    parser.add_argument("--device", default="cpu", help="torch device to train on (cpu, cuda)")
    parser.add_argument(
        "--threads",
        type=int,
        default=argparse.SUPPRESS,
        metavar="N",
        help="torch intra-op CPU threads (default: torch's choice, one per core)",
    )
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=argparse.SUPPRESS,
        help="show a progress bar (default: only on a terminal and outside CI)",
    )
    parser.add_argument(
        "--distributed",
        choices=("ddp", "fsdp"),
        default=argparse.SUPPRESS,
        help="data-parallel training under torchrun (torchrun --nproc_per_node N -m "
        "sparsetorch train ...): ddp = DistributedDataParallel, fsdp = FSDP2 fully_shard; "
        "--batch-size is the global batch; rank 0 writes the run dir",
    )
    parser.add_argument(
        "--dist-timeout",
        type=float,
        default=argparse.SUPPRESS,
        metavar="S",
        help="with --distributed: seconds a collective may wait for the other ranks before "
        "failing (default 600)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print the resolved hparams and the run dir, then exit without training",
    )
    add_hparam_arguments(parser)


def run(args: argparse.Namespace) -> int:
    options = vars(args)
    hp = hparams_from_args(args, options.get("config"))
    if args.dry_run:
        from sparsetorch.experiments.hparams import run_name
        from sparsetorch.experiments.rundir import check_out_dir
        from sparsetorch.experiments.runner import check_names

        check_names(hp)  # the run this prints must be one train would start
        print(json.dumps(hp.to_dict(), indent=2))
        print(f"# run dir: {check_out_dir(args.out) / run_name(hp, hp.identity())}")
        return 0
    threads = options.get("threads")
    if threads is not None:
        if threads < 1:
            raise ValueError(f"--threads must be >= 1, got {threads}")
        import torch

        torch.set_num_threads(threads)
    from sparsetorch.experiments import train

    distributed, device, rank_zero = options.get("distributed"), args.device, True
    if distributed is not None:
        from sparsetorch.distributed.launch import DEFAULT_TIMEOUT_S, init_from_env, is_rank_zero

        device = init_from_env(device, options.get("dist_timeout", DEFAULT_TIMEOUT_S))
        rank_zero = is_rank_zero()
    elif "dist_timeout" in options:
        raise ValueError("--dist-timeout is only used with --distributed")
    try:
        result = train(
            hp, args.out, device=device, progress=options.get("progress"), distributed=distributed
        )
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume from the last checkpoint")
        return 130
    finally:
        if distributed is not None:
            from sparsetorch.distributed.launch import finish

            finish()
    if rank_zero:
        print(result.summary())
    return 0


COMMAND = Command(
    name="train",
    help="train a model (optionally with a sparsity method) in a hashed run directory",
    add_arguments=add_arguments,
    run=run,
    description=DESCRIPTION,
)
