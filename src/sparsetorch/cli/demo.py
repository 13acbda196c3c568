"""``sparsetorch demo``: what sparsity buys, end to end on real data.

Trains LeNet-300-100 briefly on Fashion-MNIST (Adam, batch 128), prints its test accuracy, then
thresholds every layer's weights by magnitude at a few sparsities (no retraining; the
pruning/lottery issues replace this with real pruning) and shows, per sparsity, the test
accuracy, the per-layer report and the bytes and matvec time of each format.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from sparsetorch.cli import Command
from sparsetorch.data import Dataset, Split, load
from sparsetorch.formats import FORMATS
from sparsetorch.models.lenet import LeNet300100
from sparsetorch.report import format_bytes, format_table, report

SPARSITIES = (0.5, 0.9, 0.95)
COMPARED = ("dense", "csr", "coo", "bsr2x2")  # every LeNet-300-100 layer divides into 2x2
BATCH, LR = 128, 1e-3
MATVEC_REPEATS = 50


def train(model: nn.Module, train_set: Split, epochs: int, seed: int) -> None:
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    g = torch.Generator().manual_seed(seed)
    steps = -(-len(train_set) // BATCH)
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(len(train_set), generator=g)
        bar = tqdm(
            range(steps), desc=f"epoch {epoch + 1}/{epochs}", disable=not sys.stderr.isatty()
        )
        for step in bar:
            batch = order[step * BATCH : (step + 1) * BATCH]
            loss = F.cross_entropy(model(train_set.x[batch]), train_set.y[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)


@torch.no_grad()
def accuracy(model: nn.Module, split: Split) -> float:
    model.eval()
    correct = sum(
        int((model(split.x[s : s + 1000]).argmax(1) == split.y[s : s + 1000]).sum())
        for s in range(0, len(split), 1000)
    )
    return correct / len(split)


def magnitude_threshold(w: torch.Tensor, sparsity: float) -> torch.Tensor:
    """A copy of ``w`` with its round(sparsity * numel) smallest-magnitude entries zeroed."""
    k = round(sparsity * w.numel())
    out = w.detach().clone()
    out.view(-1)[torch.topk(out.abs().flatten(), k, largest=False).indices] = 0
    return out


def median_us(fn: Callable[[], Any], repeats: int = MATVEC_REPEATS) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def compare_formats(
    weights: list[torch.Tensor], seed: int, repeats: int = MATVEC_REPEATS
) -> dict[str, dict[str, float]]:
    """{format: {"bytes": total over layers, "matvec_us": one vector through every layer}}."""
    g = torch.Generator().manual_seed(seed)
    xs = [torch.randn(w.shape[1], generator=g) for w in weights]
    out = {}
    for name in COMPARED:
        encoded = [FORMATS.build(name)(w) for w in weights]
        out[name] = {
            "bytes": sum(e.nbytes for e in encoded),
            "matvec_us": median_us(
                lambda encoded=encoded: [e @ x for e, x in zip(encoded, xs)], repeats
            ),
        }
    return out


def run_demo(
    data: Dataset,
    epochs: int = 1,
    seed: int = 0,
    out: Callable[[str], None] = print,
    repeats: int = MATVEC_REPEATS,
) -> dict[str, Any]:
    """Train, threshold, compare; prints through ``out`` and returns the figures."""
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"--epochs must be an int >= 1, got {epochs!r}")
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = LeNet300100(data.input_shape, data.num_classes)
    start = time.perf_counter()
    train(model, data.train, epochs, seed)
    dense_acc = accuracy(model, data.test)
    out(
        f"LeNet-300-100 on {data.name}: {len(data.train):,} training examples, {epochs} "
        f"epoch(s) in {time.perf_counter() - start:.1f} s; test accuracy {dense_acc:.4f} "
        f"({len(data.test):,} examples)\n"
    )
    layers = [model.fc1, model.fc2, model.fc3]
    dense_weights = [layer.weight.detach().clone() for layer in layers]
    results: dict[str, Any] = {"accuracy": dense_acc, "sparsities": {}}
    rows = []
    for sparsity in SPARSITIES:
        weights = [magnitude_threshold(w, sparsity) for w in dense_weights]
        with torch.no_grad():
            for layer, w in zip(layers, weights):
                layer.weight.copy_(w)
        acc = accuracy(model, data.test)
        formats = compare_formats(weights, seed, repeats)
        results["sparsities"][sparsity] = {"accuracy": acc, "formats": formats}
        if sparsity == 0.9:
            results["report"] = report(model, input_shape=(1, *data.input_shape))
        base = formats["dense"]
        for name, f in formats.items():
            rows.append(
                [
                    f"{sparsity:.2f}",
                    f"{acc:.4f}",
                    name,
                    format_bytes(int(f["bytes"])),
                    f"{f['bytes'] / base['bytes']:.3f}x",
                    f"{f['matvec_us']:.1f}",
                    f"{f['matvec_us'] / base['matvec_us']:.2f}x",
                ]
            )
    with torch.no_grad():
        for layer, w in zip(layers, dense_weights):
            layer.weight.copy_(w)
    out("Per-layer report at sparsity 0.90 (weights thresholded by magnitude, no retraining):")
    out(str(results["report"]) + "\n")
    out(
        "Formats of the thresholded weights (all three layers; matvec: one input vector "
        f"through every layer, median of {repeats}, {torch.get_num_threads()} threads):"
    )
    header = ["sparsity", "test acc", "format", "bytes", "vs dense", "matvec us", "vs dense"]
    out(format_table(header, rows, left={2}))
    return results


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--epochs", type=int, default=1, help="training epochs (>= 1)")
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the initialisation, data order and inputs"
    )
    parser.add_argument(
        "--data-dir",
        default=None,
        help="directory with the four Fashion-MNIST IDX files (.gz or not); default: "
        "$SPARSETORCH_FASHION_MNIST or the Debian package dataset-fashion-mnist",
    )


def run(args: argparse.Namespace) -> int:
    run_demo(load("fashion-mnist", data_dir=args.data_dir), epochs=args.epochs, seed=args.seed)
    return 0


COMMAND = Command(
    name="demo",
    help="train a small MLP on Fashion-MNIST, then compare sparse formats of its weights",
    add_arguments=add_arguments,
    run=run,
    description=__doc__.split("\n\n", 1)[1].strip(),
)
