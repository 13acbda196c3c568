"""Layer collapse at extreme sparsity: weights kept per layer by each at-init method,
without training, and the time each takes to compute its mask. SNIP, GraSP and random masks are computed from their scores with the layer
collapse check bypassed (so an emptied layer shows as 0); SynFlow runs its 100 rounds. A row
with a 0 is a disconnected network.

    python benchmarks/static_sparse_collapse.py --model lenet300 --sparsity 0.999
    python benchmarks/static_sparse_collapse.py --model conv4 --sparsity 0.999 --threads 1
"""

from __future__ import annotations

import argparse
import time

import torch

from sparsetorch.algorithms.at_init import synflow
from sparsetorch.algorithms.at_init.base import mask_seed
from sparsetorch.criteria import get as get_criterion
from sparsetorch.criteria.grasp import grasp_scores
from sparsetorch.criteria.snip import snip_scores
from sparsetorch.data import load
from sparsetorch.experiments import Hparams, build_model
from sparsetorch.experiments.data_order import batch_indices, epoch_order
from sparsetorch.masking import get_masks, prunable_parameters
from sparsetorch.pruning import compute_masks


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", default="lenet300")
    p.add_argument("--sparsity", type=float, default=0.999)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    data = load("fashion-mnist")
    hp = Hparams()
    hp.model.name, hp.training.seed = args.model, args.seed
    model = build_model(hp, data.input_shape, data.num_classes)
    names = [full for full, _, _ in prunable_parameters(model)]
    idx = batch_indices(epoch_order(len(data.train), args.seed, 0), 0, hp.training.batch_size)
    batch = (data.train.x[idx], data.train.y[idx])  # the runner's first training batch
    seconds: dict[str, float] = {}
    rows: dict[str, dict[str, int]] = {}

    def timed(label, scores_fn, distribution):
        start = time.perf_counter()
        masks = compute_masks(model, args.sparsity, scores=scores_fn(), distribution=distribution)
        seconds[label] = time.perf_counter() - start
        rows[label] = {n: int(m.sum()) for n, m in masks.items()}

    def random_scores():
        generator = torch.Generator().manual_seed(mask_seed(args.seed))
        return get_criterion("random").scores(model, names, generator=generator)

    timed("SNIP", lambda: snip_scores(model, names, batch), "global")
    timed("GraSP", lambda: grasp_scores(model, names, batch), "global")
    timed("random (uniform)", random_scores, "uniform")
    timed("random (ERK)", random_scores, "erk")
    fresh = build_model(hp, data.input_shape, data.num_classes)
    start = time.perf_counter()
    pruned = synflow(fresh, data.input_shape, args.sparsity)
    seconds["SynFlow (100 rounds)"] = time.perf_counter() - start
    rows["SynFlow (100 rounds)"] = {n: int(m.sum()) for n, m in get_masks(pruned).items()}
    total = sum(model.get_parameter(n).numel() for n in names)
    short = [n.removesuffix(".weight") for n in names]
    print(
        f"{args.model}, {100 * args.sparsity:g}% sparse ({round((1 - args.sparsity) * total)} of "
        f"{total} weights kept), seed {args.seed}: weights kept per layer, and the time to "
        f"compute the mask ({torch.get_num_threads()} thread(s))\n"
    )
    print("| method | " + " | ".join(short) + " | mask time (s) |\n|" + "---|" * (len(names) + 2))
    for label, kept in rows.items():
        cells = [f"**{kept[n]}**" if kept[n] == 0 else str(kept[n]) for n in names]
        print(f"| {label} | " + " | ".join(cells) + f" | {seconds[label]:.2f} |")


if __name__ == "__main__":
    main()
