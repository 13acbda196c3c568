"""Static sparse training results: SNIP, GraSP, SynFlow, random pruning (uniform and
ERK layer densities) and dense on Fashion-MNIST. The mask is chosen at initialisation and kept
fixed while the surviving weights train; every method gets the same training budget.

Every run goes through the runner (``sparsetorch.experiments.train``) into ``--out``: finished
runs are reused and interrupted ones resume, so the script can be stopped and restarted (a
rerun of a finished grid only rebuilds the tables). Runs are ordered seed-major, so the first
seed of every cell finishes first. A method that would empty a layer at some sparsity
(layer collapse) is not trained: the cell says "collapse".

Prints a markdown table of final test accuracy (mean +- std over the seeds) per method and
sparsity, and writes the per-layer density figure at ``--plot-sparsity`` (seed 0).

    python benchmarks/static_sparse.py --model lenet300 --epochs 3 --out runs/static_sparse
    python benchmarks/static_sparse.py --model conv4 --epochs 1 --train-size 10000 --lr 3e-4
    python benchmarks/static_sparse.py --device cuda --model conv4 --epochs 10 --lr 3e-4
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sparsetorch.data import load
from sparsetorch.experiments import Hparams, train
from sparsetorch.experiments.data_order import steps_per_epoch
from sparsetorch.experiments.hparams import run_name


@dataclass(frozen=True)
class Method:
    label: str
    method: str  # sparsetorch --method
    distribution: str = "global"


METHODS = (
    Method("dense", "dense"),
    Method("SNIP", "snip"),
    Method("GraSP", "grasp"),
    Method("SynFlow", "synflow"),
    Method("random (uniform)", "random", "uniform"),
    Method("random (ERK)", "random", "erk"),
)
COLLAPSE = "would empty layer"
DISPLAY = {"lenet300": "LeNet-300-100", "conv4": "Conv-4", "conv2": "Conv-2", "conv6": "Conv-6"}


def hparams(args: argparse.Namespace, m: Method, sparsity: float, seed: int) -> Hparams:
    hp = Hparams()
    hp.model.name = args.model
    hp.training.epochs = args.epochs
    hp.training.seed = seed
    if args.lr is not None:
        hp.training.lr = args.lr
    hp.training.batch_size = args.batch_size
    hp.dataset.train_size = args.train_size
    hp.dataset.val_size = args.val_size
    hp.dataset.test_size = args.test_size
    hp.sparsity.method = m.method
    if m.method != "dense":
        hp.sparsity.sparsity = sparsity
        hp.sparsity.distribution = m.distribution
    return hp


def run_one(args, data, m: Method, sparsity: float, seed: int, steps: int | None = None):
    """One run (``steps``: that many updates instead of ``--epochs``, for the masks only)."""
    hp = hparams(args, m, sparsity, seed)
    n_train = len(data.train) if args.train_size is None else min(args.train_size, len(data.train))
    hp.training.eval_every = args.epochs * steps_per_epoch(n_train, args.batch_size)
    if steps is not None:
        hp.training.steps, hp.training.eval_every = steps, steps
    row: dict[str, Any] = {"label": m.label, "sparsity": sparsity, "seed": seed}
    # a finished run is read from its result.json (no checkpoint is loaded, so run dirs written
    # by an older checkpoint format still count)
    checked = copy.deepcopy(hp).validate()
    run_dir = Path(args.out) / run_name(checked, checked.identity())
    if not (run_dir / "result.json").is_file():
        try:
            train(hp, out_dir=args.out, dataset=data, device=args.device, progress=False)
        except ValueError as exc:
            if COLLAPSE not in str(exc):
                raise
            return {**row, "collapse": str(exc)}
    result = json.loads((run_dir / "result.json").read_text())
    return {
        **row,
        "test_acc": result["final"]["test_acc"],
        "wall_s": result["wall_s"],
        "densities": {name: info["density"] for name, info in result["layers"].items()},
        "run_dir": str(run_dir),
    }


def cell(rows: list[dict[str, Any]]) -> str:
    accs = [r["test_acc"] for r in rows if "test_acc" in r]
    collapsed = sum("collapse" in r for r in rows)
    if collapsed == len(rows):
        return "collapse"
    parts = []
    if accs:
        std = statistics.stdev(accs) if len(accs) > 1 else 0.0
        parts.append(f"{100 * statistics.mean(accs):.2f} ± {100 * std:.2f}")
        if len(accs) < len(rows):
            parts.append(f"(n={len(accs)})")
    if collapsed:
        parts.append(f"collapse in {collapsed}/{len(rows)}")
    return " ".join(parts)


def table(results: list[dict[str, Any]], sparsities: list[float]) -> str:
    head = "| method | " + " | ".join(f"{100 * s:g}%" for s in sparsities) + " |"
    lines = [head, "|" + "---|" * (len(sparsities) + 1)]
    for m in METHODS:
        cells = []
        for s in sparsities:
            rows = [
                r
                for r in results
                if r["label"] == m.label and (m.method == "dense" or r["sparsity"] == s)
            ]
            cells.append(cell(rows) if rows else "")
        if any(cells):
            lines.append(f"| {m.label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# the library's method colours (sparsetorch.experiments.plots.METHOD_COLORS); random pruning
# is grey, hatched under the uniform distribution
def _bar_style(label: str) -> dict[str, Any]:
    from sparsetorch.experiments.plots import method_color

    m = next(m for m in METHODS if m.label == label)
    style: dict[str, Any] = {
        "color": method_color(m.method),
        "edgecolor": "black",
        "linewidth": 0.4,
    }
    if m.method == "random" and m.distribution == "uniform":
        style.update(color="white", edgecolor=method_color("random"), hatch="///")
    return style


def density_figure(results: list[dict[str, Any]], sparsity: float, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    first = min(r["seed"] for r in results)
    rows = [
        r
        for r in results
        if r["seed"] == first
        and r["sparsity"] == sparsity
        and r["label"] != "dense"
        and "densities" in r
    ]
    if not rows:
        return
    layers = list(rows[0]["densities"])
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(layers), 4))
    width = 0.8 / len(rows)
    for i, r in enumerate(rows):
        xs = [j + (i - (len(rows) - 1) / 2) * width for j in range(len(layers))]
        densities = [max(r["densities"][n], 1e-5) for n in layers]
        ax.bar(xs, densities, width, label=r["label"], **_bar_style(r["label"]))
    collapsed = [
        r["label"]
        for r in results
        if r["sparsity"] == sparsity and r["seed"] == first and "collapse" in r
    ]
    ax.axhline(1 - sparsity, color="k", lw=0.8, ls="--", label=f"global density {1 - sparsity:g}")
    ax.set_xticks(range(len(layers)), [n.removesuffix(".weight") for n in layers], rotation=30)
    ax.set_yscale("log")
    ax.set_ylabel("layer density (kept / all)")
    note = f"; collapsed (not shown): {', '.join(collapsed)}" if collapsed else ""
    ax.set_title(
        f"{title} on Fashion-MNIST: layer densities at {100 * sparsity:g}% sparsity "
        f"(seed {first}){note}",
        fontsize=9,
    )
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", default="lenet300", help="lenet300, conv4, resnet20, ...")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--lr", type=float, default=None, help="default: the runner's (Adam 1.2e-3)")
    p.add_argument("--batch-size", type=int, default=60)
    p.add_argument("--train-size", type=int, default=None, help="first N training examples")
    p.add_argument("--val-size", type=int, default=1000)
    p.add_argument("--test-size", type=int, default=None, help="default: the whole test split")
    p.add_argument("--sparsities", type=float, nargs="+", default=[0.8, 0.9, 0.95, 0.98, 0.99])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument(
        "--methods",
        nargs="+",
        default=[m.method + ":" + m.distribution for m in METHODS],
        help="method:distribution pairs",
    )
    p.add_argument("--plot-sparsity", type=float, default=0.98)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--out", default="runs/static_sparse")
    p.add_argument("--figures", default="docs/figures")
    p.add_argument(
        "--figure-only",
        action="store_true",
        help="only the density figure: each method's mask at --plot-sparsity for the first "
        "seed, from a one-step run (the mask is chosen at initialisation and never changes)",
    )
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    wanted = set(args.methods)
    methods = [m for m in METHODS if f"{m.method}:{m.distribution}" in wanted]
    data = load("fashion-mnist")
    if args.figure_only:
        seed, s = args.seeds[0], args.plot_sparsity
        rows = [run_one(args, data, m, s, seed, steps=1) for m in methods if m.method != "dense"]
        figure = Path(args.figures) / f"static_sparse_density_{args.model}_{100 * s:g}.png"
        density_figure(rows, s, figure, DISPLAY.get(args.model, args.model))
        print(f"figure: {figure}")
        return
    start = time.perf_counter()
    results = []
    for seed in args.seeds:
        for m in methods:
            for s in [0.0] if m.method == "dense" else args.sparsities:
                t = time.perf_counter()
                r = run_one(args, data, m, s, seed)
                results.append(r)
                status = f"{r['test_acc']:.4f}" if "test_acc" in r else "collapse"
                print(
                    f"[{time.perf_counter() - start:7.0f}s] {args.model} {m.label:17s} s={s:<5g} seed={seed}: {status} ({time.perf_counter() - t:.0f}s)",
                    flush=True,
                )
    wall = time.perf_counter() - start
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = {"args": vars(args), "wall_s": wall, "results": results}
    (out / f"static_sparse_{args.model}.json").write_text(json.dumps(summary, indent=1))
    print(f"\n## {args.model}: final test accuracy (%), mean ± std over seeds {args.seeds}\n")
    print(table(results, args.sparsities))
    figure = (
        Path(args.figures) / f"static_sparse_density_{args.model}_{100 * args.plot_sparsity:g}.png"
    )
    density_figure(results, args.plot_sparsity, figure, DISPLAY.get(args.model, args.model))
    trained = sum(r.get("wall_s", 0.0) for r in results)
    print(f"\nfigure: {figure}\nwall time of this invocation: {wall:.0f}s")
    print(f"sum of the runs' own wall times (pruning + training + evaluation): {trained:.0f}s")


if __name__ == "__main__":
    main()
