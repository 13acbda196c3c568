"""GraSP's sign convention and temperature, measured.

GraSP (Wang et al. 2020) scores S(-theta) = -theta * (H g) and removes the weights with the
LARGEST S; sparsetorch keeps the top of theta * (H g) = -S, the same mask. This script trains
LeNet-300-100 on Fashion-MNIST with masks from variants of that score at one sparsity, so the
choice is checked on data as well as in the unit tests:

* ``GraSP (T=200)``: sparsetorch's default, the official code's softmax temperature;
* ``GraSP (T=1)``: no temperature;
* ``inverted GraSP``: keep the top of S instead (the opposite sign);
* ``|GraSP|``: keep the top of |theta * H g| (the magnitude variant, not the paper's);
* ``SNIP`` and ``random`` (global) for reference.

    python benchmarks/static_sparse_grasp_sign.py --sparsity 0.9 --train-size 5000 --epochs 1
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from sparsetorch.criteria.grasp import grasp_scores
from sparsetorch.criteria.snip import snip_scores
from sparsetorch.data import load
from sparsetorch.experiments import Hparams, build_model, prepare_dataset, train
from sparsetorch.experiments.data_order import batch_indices, epoch_order
from sparsetorch.masking import prunable_parameters
from sparsetorch.pruning import compute_masks


def variants(model, names, batch, seed):
    grasp = grasp_scores(model, names, batch, temperature=200.0)
    generator = torch.Generator().manual_seed(10_000 + seed)
    return {
        "GraSP (T=200)": grasp,
        "GraSP (T=1)": grasp_scores(model, names, batch, temperature=1.0),
        "inverted GraSP (T=200)": {n: -s for n, s in grasp.items()},
        "|GraSP| (T=200)": {n: s.abs() for n, s in grasp.items()},
        "SNIP": snip_scores(model, names, batch),
        "random": {n: torch.rand(s.shape, generator=generator) for n, s in grasp.items()},
    }


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", default="lenet300")
    p.add_argument("--sparsity", type=float, default=0.9)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--lr", type=float, default=None, help="default: the runner's (Adam 1.2e-3)")
    p.add_argument("--train-size", type=int, default=5000)
    p.add_argument("--test-size", type=int, default=None, help="default: the whole test split")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    data = load("fashion-mnist")
    start = time.perf_counter()
    accs: dict[str, list[float]] = {}
    for seed in args.seeds:
        hp = Hparams()
        hp.model.name = args.model
        hp.training.epochs, hp.training.seed = args.epochs, seed
        if args.lr is not None:
            hp.training.lr = args.lr
        hp.dataset.train_size, hp.dataset.val_size = args.train_size, 1000
        hp.dataset.test_size = args.test_size
        sub = prepare_dataset(hp.dataset, data)
        model = build_model(hp, sub.input_shape, sub.num_classes)
        # the batch the runner's hooks score on: the first batch of the seeded data order
        idx = batch_indices(epoch_order(len(sub.train), seed, 0), 0, hp.training.batch_size)
        batch = (sub.train.x[idx], sub.train.y[idx])
        names = [full for full, _, _ in prunable_parameters(model)]
        for label, scores in variants(model, names, batch, seed).items():
            masks = compute_masks(model, args.sparsity, scores=scores)
            result = train(hp, masks=masks, dataset=data, device=args.device, progress=False)
            accs.setdefault(label, []).append(result.final["test_acc"])
            print(f"seed {seed} {label:24s} {result.final['test_acc']:.4f}", flush=True)
    print(
        f"\n{args.model}, {100 * args.sparsity:g}% sparse (global), {args.epochs} epoch(s) on "
        f"{args.train_size} training examples, seeds {args.seeds}: final test accuracy (%)\n"
    )
    print("| scores kept (top-k) | test accuracy |\n|---|---|")
    for label, values in accs.items():
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        print(f"| {label} | {100 * statistics.mean(values):.2f} ± {100 * std:.2f} |")
    print(f"\nwall time: {time.perf_counter() - start:.0f}s")


if __name__ == "__main__":
    main()
