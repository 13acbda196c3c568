"""Dynamic sparse training results: dense, small-dense, static random (ERK), SNIP,
SET, RigL (uniform and ERK) and GMP on Fashion-MNIST, the same training budget for all.

Every run goes through the runner (``sparsetorch.experiments.train``) into ``--out``: finished
runs are reused and interrupted ones resume, so the script can be stopped and restarted.
Prints one markdown table per sparsity (final test accuracy mean +- std over the seeds,
training and inference FLOPs relative to dense, counted as the RigL paper does:
``sparsetorch.algorithms.during.flops``) and writes the topology-churn and accuracy-vs-FLOPs
figures into ``--figures``.

    python benchmarks/dynamic_sparse.py --out runs/dynamic_sparse --figures docs/figures
    python benchmarks/dynamic_sparse.py --device cuda --model conv4 --epochs 10 ...
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from sparsetorch.algorithms.during.flops import forward_flops, training_flops
from sparsetorch.data import load
from sparsetorch.experiments import Hparams, train
from sparsetorch.masking import get_masks
from sparsetorch.model_report import count_flops
from sparsetorch.models import build
from sparsetorch.models.lenet import LeNet300100


@dataclass(frozen=True)
class Method:
    label: str
    method: str  # sparsetorch --method; "dense" for dense and small-dense
    distribution: str = "global"
    small_dense: bool = False


METHODS = (
    Method("dense", "dense"),
    Method("small-dense", "dense", small_dense=True),
    Method("static random (ERK)", "random", "erk"),
    Method("SNIP", "snip", "global"),
    Method("SET (uniform)", "set", "uniform"),
    Method("SET (ERK)", "set", "erk"),
    Method("RigL (uniform)", "rigl", "uniform"),
    Method("RigL (ERK)", "rigl", "erk"),
    Method("GMP (uniform)", "gmp", "uniform"),
)


def small_dense_lenet(sparsity: float, input_shape: tuple[int, ...]) -> tuple[int, int]:
    """Hidden widths (a, b) of the LeNet-300-100 shape (a/b = 3) whose weights number closest
    to (1 - sparsity) x the dense weights."""
    n_in = math.prod(input_shape)
    target = (1 - sparsity) * (n_in * 300 + 300 * 100 + 100 * 10)

    def weights(a: int, b: int) -> int:
        return n_in * a + a * b + b * 10

    candidates = [(a, max(1, round(a / 3))) for a in range(1, 301)]
    return min(candidates, key=lambda ab: abs(weights(*ab) - target))


def hparams(args: argparse.Namespace, m: Method, sparsity: float, seed: int, spe: int) -> Hparams:
    hp = Hparams()
    hp.model.name = args.model
    hp.training.epochs = args.epochs
    hp.training.seed = seed
    hp.training.optimizer = args.optimizer
    hp.training.lr = args.lr
    hp.training.eval_every = spe
    hp.dataset.train_size = args.train_size
    hp.sparsity.method = m.method
    if m.method != "dense":
        hp.sparsity.sparsity = sparsity
        hp.sparsity.distribution = m.distribution
    return hp


def read_history(run_dir: Path) -> list[dict]:
    path = run_dir / "topology.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def run_flops(m: Method, result, dense: dict[str, float], small: float | None) -> float:
    """Training FLOPs (per example) of one finished run."""
    steps = result.total_steps
    if m.method == "dense":
        return 3 * (small if m.small_dense else sum(dense.values())) * steps
    history = read_history(result.run_dir)
    masks = get_masks(result.model)
    final = {n: int(mask.sum()) / mask.numel() for n, mask in masks.items()}
    if m.method == "gmp":  # dense until the first update, then each update's densities
        changes = [(h["step"], h["density"]) for h in history]
        return training_flops(dense, steps, {}, changes)
    updates = [h["step"] for h in history] if m.method == "rigl" else []
    return training_flops(dense, steps, final, dense_gradient_steps=updates)


def mean_std(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):.2f} ± {100 * std:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/dynamic_sparse", help="runs directory")
    parser.add_argument("--figures", default=None, help="write the PNG figures here")
    parser.add_argument("--model", default="lenet300", help="sparsetorch model name")
    parser.add_argument("--epochs", type=int, default=3, help="training epochs for every run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--sparsities", type=float, nargs="+", default=[0.9, 0.95])
    parser.add_argument(
        "--methods", nargs="+", default=[m.label for m in METHODS], help="labels to run"
    )
    parser.add_argument("--optimizer", default="adam", help="sgd, momentum, adam or adamw")
    parser.add_argument("--lr", type=float, default=1.2e-3, help="learning rate")
    parser.add_argument("--train-size", type=int, default=None, help="first N training examples")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (CPU)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    known = {m.label: m for m in METHODS}
    unknown = sorted(set(args.methods) - set(known))
    if unknown:
        parser.error(f"unknown method label(s) {unknown}; known: {list(known)}")
    methods = [known[label] for label in args.methods]

    data = load("fashion-mnist")
    n_train = len(data.train) if args.train_size is None else min(args.train_size, len(data.train))
    spe = math.ceil(n_train / Hparams().training.batch_size)
    input_shape = tuple(data.train.x.shape[1:])
    probe = build(args.model, input_shape=input_shape, num_classes=10)
    dense = {k: float(v) for k, v in count_flops(probe, torch.zeros(1, *input_shape)).items()}
    summary: dict = {"model": args.model, "epochs": args.epochs, "seeds": args.seeds, "rows": []}
    histories: dict[str, list[dict]] = {}
    start = time.perf_counter()
    for sparsity in args.sparsities:
        for m in methods:
            if m.method == "dense" and not m.small_dense and sparsity != args.sparsities[0]:
                continue  # dense does not depend on the sparsity: run it once
            if m.small_dense and args.model != "lenet300":
                print(f"skip {m.label}: only defined for lenet300")
                continue
            accs, flops, widths, small = [], [], None, None
            for seed in args.seeds:
                hp = hparams(args, m, sparsity, seed, spe)
                model = None
                if m.small_dense:
                    widths = small_dense_lenet(sparsity, input_shape)
                    torch.manual_seed(seed)
                    model = LeNet300100(input_shape, 10, hidden=widths)
                    small = float(sum(count_flops(model, torch.zeros(1, *input_shape)).values()))
                result = train(hp, args.out, model=model, dataset=data, device=args.device)
                accs.append(result.final["test_acc"])
                dense_run = 3 * sum(dense.values()) * result.total_steps
                flops.append(run_flops(m, result, dense, small) / dense_run)
                if seed == args.seeds[0] and m.method in ("rigl", "set", "gmp"):
                    histories[f"{m.label} {sparsity:g}"] = read_history(result.run_dir)
                inference = (
                    small / sum(dense.values())
                    if m.small_dense
                    else forward_flops(dense, _densities(result.model)) / sum(dense.values())
                )
                print(
                    f"[{time.perf_counter() - start:7.0f}s] {m.label:20s} s={sparsity:g} "
                    f"seed={seed} test_acc={result.final['test_acc']:.4f} "
                    f"train_flops={flops[-1]:.3f} {'(reused)' if result.reused else ''}",
                    flush=True,
                )
            summary["rows"].append(
                {
                    "sparsity": 0.0 if m.label == "dense" else sparsity,
                    "label": m.label,
                    "test_acc": accs,
                    "train_flops": statistics.mean(flops),
                    "inference_flops": inference,
                    "small_dense_widths": widths,
                }
            )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print_tables(summary, args)
    if args.figures:
        figures(summary, histories, Path(args.figures))


def _densities(model: torch.nn.Module) -> dict[str, float]:
    return {n: int(m.sum()) / m.numel() for n, m in get_masks(model).items()}


def print_tables(summary: dict, args: argparse.Namespace) -> None:
    dense_rows = [r for r in summary["rows"] if r["label"] == "dense"]
    for sparsity in args.sparsities:
        print(
            f"\n### {args.model}, sparsity {sparsity:g}, {args.optimizer} lr {args.lr:g}, "
            f"{args.epochs} epochs ({len(args.seeds)} seeds)\n"
        )
        print("| method | test accuracy (%) | training FLOPs | inference FLOPs |")
        print("|---|---|---|---|")
        rows = dense_rows + [r for r in summary["rows"] if r["sparsity"] == sparsity]
        for r in rows:
            widths = r["small_dense_widths"]
            label = r["label"] + (f" ({widths[0]}-{widths[1]})" if widths else "")
            print(
                f"| {label} | {mean_std(r['test_acc'])} | {r['train_flops']:.3f}x "
                f"| {r['inference_flops']:.3f}x |"
            )


def figures(summary: dict, histories: dict[str, list[dict]], where: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    where.mkdir(parents=True, exist_ok=True)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for name, history in histories.items():
        if not history or name.startswith("GMP"):
            continue
        steps = [h["step"] for h in history]
        left.plot(steps, [h["changed"] for h in history], marker=".", label=name)
        right.plot(steps, [h["overlap_init"] for h in history], label=name)
    left.set(xlabel="step", ylabel="fraction of connections replaced", title="churn per update")
    right.set(xlabel="step", ylabel="IoU with the initial mask", title="drift from the start")
    left.legend(fontsize=7)
    right.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(where / "dynamic_sparse_churn.png", dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    markers = {}
    for r in summary["rows"]:
        acc = 100 * statistics.mean(r["test_acc"])
        marker = markers.setdefault(r["sparsity"], "*os^v"[len(markers) % 5])
        ax.scatter(r["train_flops"], acc, marker=marker)
        ax.annotate(f"{r['label']} {r['sparsity']:g}", (r["train_flops"], acc), fontsize=6)
    ax.set(xscale="log", xlabel="training FLOPs relative to dense", ylabel="test accuracy (%)")
    fig.tight_layout()
    fig.savefig(where / "dynamic_sparse_acc_flops.png", dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
