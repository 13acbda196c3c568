"""Reproduce the lottery-ticket experiments on Fashion-MNIST: results, not tests.

    python benchmarks/lottery_repro.py lenet --out runs/repro          # ~2 h on 1 CPU thread
    python benchmarks/lottery_repro.py conv2 --out runs/repro          # ~3 h on 1 CPU thread
    python benchmarks/lottery_repro.py lenet --device cuda --epochs 55 --out runs/repro-gpu

Each experiment is one ``st.lottery.IMP`` run (resumable: start the same command again after
a kill and it continues where it stopped); the table and the figure land in the run dir
(``lottery.md``, ``lottery.png``) and are printed at the end with the wall time.

* ``lenet``: LeNet-300-100, the paper's settings adapted to Fashion-MNIST and a 2-core CPU:
  Adam 1.2e-3, batch 60, layerwise rates 20% (hidden) / 10% (output), 15 rounds (3.6% of the
  weights left), rewind to init, seeds 0,1,2, controls reinit and random-prune. Training per
  round: ``--epochs`` (default 3, 2751 iterations; the paper trains 50K iterations), evaluated
  every 250 iterations for the early-stop iteration.
* ``conv2``: Conv-2 (Frankle & Carbin 2019: Adam 2e-4, batch 60) with late rewinding to
  iteration ``--rewind`` (default 40, 10% of training) and the reinit control, one seed.
  Conv-2 costs ~0.4 s per iteration on one CPU thread (its 64-channel 3x3 convolutions on
  28x28), so by default it trains on the first 6000 training images for 400 iterations per
  round (evaluated on 1000 validation and 2000 test images every 100) and prunes at twice the
  paper's rates (20% conv, 40% fc, 20% output) for 5 rounds instead of 10 at 10/20/10%;
  ``--full`` uses the paper's setting: the whole dataset, 20K iterations, the paper's rates,
  10 rounds (for a GPU).
"""

from __future__ import annotations

import argparse
import time

import torch

from sparsetorch.experiments import Hparams
from sparsetorch.lottery import IMP, IMPConfig


def lenet(args: argparse.Namespace) -> tuple[Hparams, IMPConfig]:
    hp = Hparams()
    hp.model.name = "lenet300"
    hp.training.optimizer, hp.training.lr, hp.training.batch_size = "adam", 1.2e-3, 60
    hp.training.epochs = args.epochs or 3
    hp.training.eval_every = 250
    lottery = IMPConfig(
        rounds=args.rounds or 15,
        prune_rate=0.2,
        layer_rates={"output": 0.1},
        rewind=args.rewind or "init",
        seeds=args.seeds or (0, 1, 2),
        controls=("reinit", "random-prune") if args.controls is None else args.controls,
    )
    return hp, lottery


def conv2(args: argparse.Namespace) -> tuple[Hparams, IMPConfig]:
    hp = Hparams()
    hp.model.name = "conv2"
    hp.training.optimizer, hp.training.lr, hp.training.batch_size = "adam", 2e-4, 60
    if args.full:
        hp.training.steps, hp.training.eval_every = 20_000, 500
        rates, rounds = (0.1, 0.2, 0.1), 10
    else:
        hp.dataset.train_size, hp.dataset.val_size, hp.dataset.test_size = 6000, 1000, 2000
        hp.training.steps, hp.training.eval_every = 400, 100
        rates, rounds = (0.2, 0.4, 0.2), 5
    if args.epochs:
        hp.training.steps, hp.training.epochs = None, args.epochs
    conv_rate, fc_rate, output_rate = rates
    conv = {f"features.{i}": conv_rate for i in (0, 2)}  # the two 3x3 convolutions
    lottery = IMPConfig(
        rounds=args.rounds or rounds,
        prune_rate=fc_rate,
        layer_rates={**conv, "output": output_rate},
        rewind=args.rewind or "40",
        seeds=args.seeds or (0,),
        controls=("reinit",) if args.controls is None else args.controls,
    )
    return hp, lottery


EXPERIMENTS = {"lenet": lenet, "conv2": conv2}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("experiment", choices=sorted(EXPERIMENTS))
    parser.add_argument("--out", default="runs/repro", help="parent of the lottery run dirs")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs per round")
    parser.add_argument("--rounds", type=int, default=None, help="pruning rounds")
    parser.add_argument("--rewind", default=None, help="init, STEPS or EPOCHSep")
    parser.add_argument("--seeds", type=lambda s: tuple(int(x) for x in s.split(",")), default=None)
    parser.add_argument(
        "--controls",
        type=lambda s: tuple(c for c in s.split(",") if c and c != "none"),
        default=None,
        help="control branches, e.g. reinit,random-prune or none (default: the experiment's)",
    )
    parser.add_argument("--full", action="store_true", help="conv2: whole dataset, 20K steps")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    hp, lottery = EXPERIMENTS[args.experiment](args)
    start = time.perf_counter()
    imp = IMP(hp, lottery, out_dir=args.out, device=args.device, log=print)
    print(f"lottery run dir: {imp.path}", flush=True)
    summary = imp.run()
    wall = time.perf_counter() - start
    print(summary["table"])
    print(f"table: {summary['markdown']}\nfigure: {summary['figure']}")
    print(
        f"wall time: {wall:.0f} s ({wall / 3600:.2f} h) on {args.device}, {args.threads} thread(s)"
    )


if __name__ == "__main__":
    main()
