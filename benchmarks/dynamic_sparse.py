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
    parser.add_argument(
        "--replot",
        metavar="SUMMARY_JSON",
        default=None,
        help="only redraw the accuracy-vs-FLOPs figure into --figures from a summary.json (or "
        "a recorded one, docs/figures/data/*.json)",
    )
    args = parser.parse_args()
    if args.replot:
        figures(json.loads(Path(args.replot).read_text()), {}, Path(args.figures or "."))
        return
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
    summary: dict = {"model": args.model, "epochs": args.epochs, "seeds": args.seeds,
                     "optimizer": args.optimizer, "lr": args.lr, "rows": []}  # fmt: skip
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


def _style(label: str) -> tuple[str, bool]:
    """(colour of the label's method, whether its markers are filled): one colour per method
    (``sparsetorch.experiments.plots.METHOD_COLORS``), ERK filled, uniform hollow."""
    from sparsetorch.experiments.plots import method_color

    m = next((m for m in METHODS if m.label == label), None)
    method = "small-dense" if m and m.small_dense else (m.method if m else label)
    return method_color(method), "uniform" not in label


SPARSITY_MARKERS = {0.0: "*", 0.9: "o", 0.95: "s", 0.98: "^", 0.99: "D"}


def accuracy_points(summary: dict) -> list[dict]:
    """One point per (method, sparsity): mean and sample std of the test accuracy over the
    seeds (%), and the mean training FLOPs relative to dense."""
    out = []
    for r in summary["rows"]:
        if "test_acc" in r:  # per-seed accuracies of a run of this script
            accs = [100 * a for a in r["test_acc"]]
            mean, std = statistics.mean(accs), statistics.stdev(accs) if len(accs) > 1 else 0.0
        else:  # recorded means and stds (docs/figures/data/*.json)
            mean, std = r["test_acc_mean"], r["test_acc_std"]
        out.append({**r, "mean": mean, "std": std, "seeds": len(r.get("test_acc", ())) or None})
    return out


def plot_accuracy_vs_flops(summary: dict, path: Path, title: str) -> Path:
    """Test accuracy against training FLOPs: a colour per method (filled = ERK, hollow =
    uniform), a marker per sparsity, error bars of one standard deviation, a legend instead
    of labels on the points."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.lines import Line2D
    from matplotlib.pyplot import subplots

    fig, ax = subplots(figsize=(9, 5), layout="constrained")
    labels: dict[str, tuple[str, bool]] = {}
    sparsities = set()
    points = accuracy_points(summary)
    # points at (almost) equal FLOPs and the same sparsity are drawn side by side
    crowds: dict[tuple, list[dict]] = {}
    for p in points:
        crowds.setdefault((p["sparsity"], round(math.log10(p["train_flops"]), 1)), []).append(p)
    for crowd in crowds.values():
        for i, p in enumerate(crowd):
            p["x"] = p["train_flops"] * 10 ** (0.012 * (i - (len(crowd) - 1) / 2))
    for p in points:
        color, filled = _style(p["label"])
        labels.setdefault(p["label"], (color, filled))
        sparsities.add(p["sparsity"])
        marker = SPARSITY_MARKERS.get(p["sparsity"], "P")
        ax.errorbar(
            p["x"], p["mean"], yerr=p["std"], fmt=marker, color=color,
            markerfacecolor=color if filled else "white", markeredgecolor=color,
            markersize=11 if marker == "*" else 7, capsize=3, elinewidth=1,
        )  # fmt: skip
    ax.set(
        xscale="log",
        xlabel="training FLOPs relative to dense (points of equal FLOPs drawn side by side)",
        ylabel="test accuracy (%)",
    )
    ticks = [t for t in (0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
             if min(sparsities_flops(summary)) / 1.5 <= t]  # fmt: skip
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.minorticks_off()
    ax.grid(alpha=0.3)
    methods = [
        Line2D(
            [],
            [],
            color=c,
            marker="o",
            linestyle="",
            markersize=7,
            markerfacecolor=c if f else "white",
            label=label,
        )
        for label, (c, f) in labels.items()
    ]
    shapes = [
        Line2D(
            [],
            [],
            color="0.3",
            marker=SPARSITY_MARKERS.get(s, "P"),
            linestyle="",
            markersize=8,
            label="dense" if s == 0 else f"sparsity {s:g}",
        )
        for s in sorted(sparsities)
    ]
    first = ax.legend(handles=methods, title="method", fontsize=8, loc="upper left",
                      bbox_to_anchor=(1.01, 1.0))  # fmt: skip
    ax.add_artist(first)
    ax.legend(handles=shapes, title="marker", fontsize=8, loc="lower left",
              bbox_to_anchor=(1.01, 0.0))  # fmt: skip
    ax.set_title(title)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def sparsities_flops(summary: dict) -> list[float]:
    return [r["train_flops"] for r in summary["rows"]]


def plot_churn_figure(histories: dict[str, list[dict]], path: Path, title: str) -> Path:
    """Churn per update and IoU with the initial mask of each dynamic run (seed 0): a colour
    per method, solid ERK / dashed uniform, a marker per sparsity."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.pyplot import subplots

    fig, (left, right) = subplots(1, 2, figsize=(12, 4.2), layout="constrained")
    for name, history in histories.items():
        if not history or name.startswith("GMP"):
            continue
        label, _, sparsity = name.rpartition(" ")
        color, filled = _style(label)
        style = dict(color=color, linestyle="-" if filled else "--", markersize=4,
                     marker=SPARSITY_MARKERS.get(float(sparsity), "P"), label=name)  # fmt: skip
        steps = [h["step"] for h in history]
        left.plot(steps, [h["changed"] for h in history], **style)
        right.plot(steps, [h["overlap_init"] for h in history], **style)
    left.set(xlabel="step", ylabel="fraction of connections replaced", title="churn per update")
    right.set(xlabel="step", ylabel="IoU with the initial mask", title="drift from the start")
    for ax in (left, right):
        ax.grid(alpha=0.3)
    right.legend(fontsize=8, ncol=2)
    fig.suptitle(title)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


DATASET_NAMES = {"lenet300": "LeNet-300-100", "conv4": "Conv-4"}


def figure_title(summary: dict, what: str) -> str:
    model = DATASET_NAMES.get(summary["model"], summary["model"])
    seeds = summary["seeds"]
    seeds = f"seeds {seeds[0]}-{seeds[-1]}" if isinstance(seeds, list) else f"seed {seeds}"
    optimizer = OPTIMIZER_NAMES.get(summary.get("optimizer", "adam"), summary.get("optimizer"))
    lr = f" lr {summary['lr']:g}" if "lr" in summary else ""
    return (
        f"{model} on Fashion-MNIST, {optimizer}{lr}, {summary['epochs']} epochs: {what} ({seeds})"
    )


OPTIMIZER_NAMES = {"adam": "Adam", "adamw": "AdamW", "sgd": "SGD", "momentum": "SGD momentum"}


def figures(summary: dict, histories: dict[str, list[dict]], where: Path) -> None:
    where.mkdir(parents=True, exist_ok=True)
    prefix = (
        "dynamic_sparse" if summary["model"] == "lenet300" else f"dynamic_sparse_{summary['model']}"
    )
    if histories:
        plot_churn_figure(
            histories, where / f"{prefix}_churn.png",
            figure_title({**summary, "seeds": summary["seeds"][0]}, "topology churn"),
        )  # fmt: skip
    plot_accuracy_vs_flops(
        summary, where / f"{prefix}_acc_flops.png",
        figure_title(summary, "test accuracy (mean ± std) vs training FLOPs"),
    )  # fmt: skip


if __name__ == "__main__":
    main()
