"""``sparsetorch train``: one training run in a hashed run directory.

    sparsetorch train --model lenet300 --dataset fashion-mnist --epochs 5 --seed 0 --out runs/
    sparsetorch train --config runs/<run>/hparams.json --lr 3e-3      # config file, flags win

Every hyperparameter flag comes from the hparams dataclasses (sparsetorch.experiments.hparams).
Running the same command again reuses the finished run; an interrupted run resumes from its
last checkpoint. Before training, one line each on stderr says what is being loaded (torch,
the data set) and where the run goes, so that the first seconds are not silent.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

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
        help="check the run as train would (load the data set, build the model on the meta "
        "device), print the resolved hparams and the run dir, then exit without training",
    )
    add_hparam_arguments(parser)


def _status(enabled: bool):
    """``say(text)``: one line on stderr (rank 0 only), flushed at once."""

    def say(text: str) -> None:
        if enabled:
            print(f"sparsetorch train: {text}", file=sys.stderr, flush=True)

    return say


def _check_data_and_model(hp) -> None:
    """Load the data set and build the model on the meta device (no memory, no training,
    nothing written): its data dir and options, and the model's options, are refused here as
    ``train`` would refuse them."""
    import torch

    from sparsetorch.experiments.runner import build_model, prepare_dataset

    data = prepare_dataset(hp.dataset)
    with torch.device("meta"):
        build_model(hp, data.input_shape, data.num_classes)


def run(args: argparse.Namespace) -> int:
    options = vars(args)
    hp = hparams_from_args(args, options.get("config"))  # no torch yet: bad flags fail fast
    hp.sparsity.config()  # the method's name and options (torch-free too)
    threads = options.get("threads")
    if threads is not None and threads < 1:
        raise ValueError(f"--threads must be >= 1, got {threads}")
    if "dist_timeout" in options and options.get("distributed") is None:
        raise ValueError("--dist-timeout is only used with --distributed")
    from sparsetorch.experiments.hparams import run_name
    from sparsetorch.experiments.rundir import RunDir, check_out_dir

    say = _status(not args.dry_run and os.environ.get("RANK", "0") == "0")
    say("importing torch ...")
    start = time.perf_counter()
    from sparsetorch.experiments.runner import check_names, named_identity, prepare_dataset

    check_names(hp)  # before anything is loaded or written
    if options.get("distributed") is not None:
        from sparsetorch.distributed.launch import check_launched

        check_launched()
    elif args.device is not None:
        from sparsetorch.experiments.runner import check_device

        check_device(args.device)
    run_dir = check_out_dir(args.out) / run_name(hp, named_identity(hp))
    if args.dry_run:
        _check_data_and_model(hp)  # what only loading and building can refuse
        print(json.dumps(hp.to_dict(), indent=2))
        print(f"# run dir: {run_dir}")
        return 0
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    from sparsetorch.experiments import train

    dataset = None
    if RunDir(run_dir).is_complete():
        say(f"{run_dir} is finished: reusing it (delete it to train again)")
    else:
        d = hp.dataset
        say(f"loading {d.name}{f' from {d.data_dir}' if d.data_dir else ''} ...")
        dataset = prepare_dataset(d)
        sizes = ", ".join(
            f"{split} {len(getattr(dataset, split)):,}" for split in ("train", "val", "test")
        )
        from sparsetorch.experiments.run_state import resume_path

        resuming = resume_path(run_dir).is_file()
        say(f"{d.name}: {sizes} examples (ready after {time.perf_counter() - start:.1f} s)")
        verb = "resuming" if resuming else "training"
        say(f"{verb} {hp.model.name} ({_method_words(hp)}) in {run_dir}")

    distributed, device, rank_zero = options.get("distributed"), args.device, True
    if distributed is not None:
        from sparsetorch.distributed.launch import DEFAULT_TIMEOUT_S, init_from_env, is_rank_zero

        device = init_from_env(device, options.get("dist_timeout", DEFAULT_TIMEOUT_S))
        rank_zero = is_rank_zero()
    try:
        result = train(
            hp,
            args.out,
            device=device,
            progress=options.get("progress"),
            distributed=distributed,
            dataset=dataset,
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


def _method_words(hp) -> str:
    s = hp.sparsity
    if s.method == "dense":
        return "dense"
    return f"{s.method}, sparsity {s.sparsity:g}, {s.pattern}, {s.distribution}"


COMMAND = Command(
    name="train",
    help="train a model (optionally with a sparsity method) in a hashed run directory",
    add_arguments=add_arguments,
    run=run,
    description=DESCRIPTION,
)
