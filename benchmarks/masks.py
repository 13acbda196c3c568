"""CPU benchmark of the mask mechanism and the pruning axes.

    python benchmarks/masks.py            # print the tables
    python benchmarks/masks.py --write    # and replace the "Masks (CPU)" section of
                                          # docs/benchmarks.md

Three measurements, all in one run:

* Overhead of masks in training: the same model (same weights) unmasked and masked at 90%
  (global magnitude), timed for forward (with autograd), forward+backward and a full Adam
  training step (zero_grad, forward, backward, step); the two models are timed alternately,
  call by call. The masked model's forward and backward
  are the dense ones (masks live in the optimizer hooks), so the difference should be the
  step's hooks: masking gradients before ``step()`` and re-zeroing weights after it.
* Exact top-k on > 16M scores (where ``torch.quantile`` refuses to run): ``topk_mask`` and
  ``global_topk_masks`` against a full ``torch.sort``, on integer-valued scores (many ties).
* N:M channel permutation: LeNet-300-100 trained one epoch on Fashion-MNIST (Adam, batch 128);
  the magnitude kept by the 2:4 mask of fc2 and fc3 without and with the permutation found by
  ``search_permutation`` (fc1's inputs are pixels: no producer to permute), and the test
  accuracy after one-shot 2:4 pruning of all three layers (no fine-tuning), without and with
  the permutation.

Timing: one thread and the CPU time of that thread per call (``time.thread_time``, median
after warm-up), not wall time: on a shared machine other processes preempt us at random.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from _docs import write_section

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import sparsetorch as st
from sparsetorch.masking import enforce
from sparsetorch.patterns.permutation import kept_magnitude, permute_channels_, search_permutation
from sparsetorch.selection import global_topk_masks, topk_mask

SECTION = "Masks (CPU)"


def median_s(fn, min_run_time: float) -> float:
    """Median CPU seconds of this thread per call, over >= 5 calls and >= min_run_time."""
    for _ in range(2):
        fn()
    times: list[float] = []
    while len(times) < 5 or (sum(times) < min_run_time and len(times) < 1000):
        start = time.thread_time()
        fn()
        times.append(time.thread_time() - start)
    return statistics.median(times)


def mlp(widths: tuple[int, ...]) -> nn.Module:
    layers: list[nn.Module] = []
    for a, b in itertools.pairwise(widths):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def step_fns(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict:
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)

    def forward():
        model(x)

    def forward_backward():
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()

    def train_step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()

    def hooks():  # what the mechanism adds to every step: mask grads before, re-zero after
        enforce._before_step(opt, (), {})
        enforce._after_step(opt, (), {})

    return {
        "forward": forward,
        "forward+backward": forward_backward,
        "train step": train_step,
        "mask hooks": hooks,
    }


def paired_median_s(fa, fb, min_run_time: float) -> tuple[float, float]:
    """Median CPU seconds per call of two functions timed alternately (a, b, a, b, ...), so
    that load from other processes hits both alike."""
    for _ in range(2):
        fa()
        fb()
    ta: list[float] = []
    tb: list[float] = []
    while len(ta) < 5 or (sum(ta) + sum(tb) < 2 * min_run_time and len(ta) < 1000):
        for fn, times in ((fa, ta), (fb, tb)):
            start = time.thread_time()
            fn()
            times.append(time.thread_time() - start)
    return statistics.median(ta), statistics.median(tb)


def overhead(args: argparse.Namespace) -> list[dict]:
    rows = []
    for name, widths, batch in (
        ("LeNet-300-100", (784, 300, 100, 10), 128),
        ("MLP 2048x3", (2048, 2048, 2048, 2048, 10), 64),
    ):
        torch.manual_seed(0)
        dense = mlp(widths)
        masked = copy.deepcopy(dense)
        start = time.thread_time()
        st.prune(masked, 0.9)
        prune_s = time.thread_time() - start
        x, y = torch.randn(batch, widths[0]), torch.randint(0, widths[-1], (batch,))
        fa, fb = step_fns(dense, x, y), step_fns(masked, x, y)
        fb["train step"]()  # gradients in place for timing the hooks alone
        plain, with_masks = {}, {}
        for phase in fa:
            plain[phase], with_masks[phase] = paired_median_s(
                fa[phase], fb[phase], args.min_run_time
            )
        # no masks, no optimizer hooks, but the same zeros: weights zeroed where the masks are
        # and gradients zeroed there by autograd hooks, so Adam does the masked model's
        # arithmetic (zero moments at pruned positions); the rest of the gap is our hooks
        zeroed = copy.deepcopy(dense)
        with torch.no_grad():
            for mask_name, mask in st.masks(masked).items():
                param = zeroed.get_parameter(mask_name)
                param.mul_(mask)
                keep = mask.clone()
                param.register_hook(lambda g, m=keep: g * m)
        plain["train step, zeros"], _ = paired_median_s(
            step_fns(zeroed, x, y)["train step"], fb["train step"], args.min_run_time
        )
        for mask, p in st.masks(masked).items():  # still enforced after all those steps
            assert bool((masked.get_parameter(mask)[~p] == 0).all())
        params = sum(p.numel() for p in dense.parameters())
        rows.append(
            {"model": name, "params": params, "batch": batch, "prune_s": prune_s}
            | {f"{k} dense": v for k, v in plain.items()}
            | {f"{k} masked": v for k, v in with_masks.items()}
        )
        print(
            f"{name}: "
            + "  ".join(
                f"{k} {plain[k] * 1e3:.2f} -> {with_masks[k] * 1e3:.2f} ms" for k in with_masks
            ),
            flush=True,
        )
    return rows


def selection(args: argparse.Namespace) -> dict:
    n = args.topk_size
    g = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 1000, (n,), generator=g, dtype=torch.int32).float()
    k = n // 10
    start = time.thread_time()
    mask = topk_mask(scores, k)
    topk_s = time.thread_time() - start
    parts = {"a": scores[: n // 2], "b": scores[n // 2 :]}
    start = time.thread_time()
    split = global_topk_masks(parts, k)
    global_s = time.thread_time() - start
    start = time.thread_time()
    order = torch.sort(scores, descending=True, stable=True).indices
    sort_s = time.thread_time() - start
    reference = torch.zeros(n, dtype=torch.bool)
    reference[order[:k]] = True
    assert torch.equal(mask, reference) and torch.equal(torch.cat([split["a"], split["b"]]), mask)
    quantile_error = ""
    try:
        torch.quantile(scores, 0.9)
    except RuntimeError as exc:
        quantile_error = str(exc).split("\n")[0]
    print(f"top-k of {n}: {topk_s:.2f} s, global {global_s:.2f} s, sort {sort_s:.2f} s", flush=True)
    return {
        "n": n,
        "k": k,
        "topk_s": topk_s,
        "global_s": global_s,
        "sort_s": sort_s,
        "quantile": quantile_error,
    }


@torch.no_grad()
def accuracy(model: nn.Module, split) -> float:
    model.eval()
    correct = sum(
        int((model(split.x[i : i + 1000]).argmax(1) == split.y[i : i + 1000]).sum())
        for i in range(0, len(split), 1000)
    )
    return correct / len(split)


def train_lenet(data, seed: int) -> tuple[nn.Module, float]:
    torch.manual_seed(seed)
    model = st.models.build("lenet300")
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    order = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(seed))
    start = time.perf_counter()
    model.train()
    for i in range(0, len(order), 128):
        idx = order[i : i + 128]
        opt.zero_grad()
        F.cross_entropy(model(data.train.x[idx]), data.train.y[idx]).backward()
        opt.step()
    return model, time.perf_counter() - start


def permutation(args: argparse.Namespace) -> list[dict]:
    data = st.data.load("fashion-mnist")
    rows = []
    for seed in args.seeds:
        model, train_s = train_lenet(data, seed)
        row = {"seed": seed, "train_s": train_s, "dense_acc": accuracy(model, data.test)}
        permuted = copy.deepcopy(model)
        for producer, consumer in (("fc1", "fc2"), ("fc2", "fc3")):
            w = permuted.get_submodule(consumer).weight
            total = float(w.detach().abs().double().sum())
            before = kept_magnitude(w) / total
            start = time.thread_time()
            perm = search_permutation(w)
            row[f"{consumer} search_s"] = time.thread_time() - start
            permute_channels_(
                permuted.get_submodule(producer), permuted.get_submodule(consumer), perm
            )
            row[f"{consumer} shape"] = tuple(w.shape)
            row[f"{consumer} before"], row[f"{consumer} after"] = before, kept_magnitude(w) / total
        x = data.test.x[:256]
        assert torch.allclose(permuted.eval()(x), model.eval()(x), atol=1e-5)  # same function
        st.prune(model, pattern="2:4")
        st.prune(permuted, pattern="2:4")
        row["acc_24"], row["acc_24_perm"] = (
            accuracy(model, data.test),
            accuracy(permuted, data.test),
        )
        rows.append(row)
        print(
            f"seed {seed}: fc2 {row['fc2 before']:.4f} -> {row['fc2 after']:.4f}, fc3 "
            f"{row['fc3 before']:.4f} -> {row['fc3 after']:.4f}; acc dense {row['dense_acc']:.4f}"
            f" 2:4 {row['acc_24']:.4f} 2:4 permuted {row['acc_24_perm']:.4f}",
            flush=True,
        )
    return rows


def markdown(over: list[dict], sel: dict, perm: list[dict], seconds: float) -> str:
    cpu = platform.processor() or platform.machine()
    lines = [
        f"## {SECTION}",
        "",
        f"`python benchmarks/masks.py --write` (torch {torch.__version__}, 1 thread, CPU time "
        f"per call (median), {cpu}, {seconds:.0f} s). Method in the script's docstring.",
        "",
        "### Overhead of masks in training (masked = 90% sparse, global magnitude)",
        "",
        "| model | params | batch | phase | unmasked ms | masked ms | masked / unmasked |",
        "|---|---:|---:|---|---:|---:|---:|",
    ]
    for r in over:
        for phase in ("forward", "forward+backward", "train step"):
            a, b = r[f"{phase} dense"], r[f"{phase} masked"]
            lines.append(
                f"| {r['model']} | {r['params']:,} | {r['batch']} | {phase} | {a * 1e3:.2f} | "
                f"{b * 1e3:.2f} | {b / a:.2f} |"
            )
    lines += [
        "",
        "Where the train-step difference comes from (same runs): the mask hooks alone (mask "
        "the gradients before `step()`, re-zero the weights after it, timed by themselves), "
        "and an unmasked model with the same zeros in its weights and gradients (autograd "
        "hooks, no masks, no optimizer hooks): Adam itself is slower on a sparse model, "
        "because its `sqrt` of the zero second moments is slower than of normal floats on this "
        "CPU (`sqrt` of 90%-zero float32 tensors measured 2.4x slower than of random ones).",
        "",
        "| model | mask hooks ms | train step, unmasked ms | unmasked with the same zeros ms | "
        "masked ms |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in over:
        lines.append(
            f"| {r['model']} | {r['mask hooks masked'] * 1e3:.2f} | "
            f"{r['train step dense'] * 1e3:.2f} | {r['train step, zeros dense'] * 1e3:.2f} | "
            f"{r['train step masked'] * 1e3:.2f} |"
        )
    lines.append("")
    lines.append(
        "`st.prune(model, 0.9)` (global magnitude) took "
        + ", ".join(f"{r['prune_s'] * 1e3:.0f} ms on {r['model']}" for r in over)
        + "."
    )
    lines += [
        "",
        f"### Exact top-k above 16M elements ({sel['n']:,} float32 scores, 1000 distinct "
        f"values, k = {sel['k']:,})",
        "",
        "| method | CPU s | exact |",
        "|---|---:|---|",
        f"| `topk_mask` (kthvalue threshold + ties by index) | {sel['topk_s']:.2f} | yes |",
        f"| `global_topk_masks` (same scores in 2 tensors) | {sel['global_s']:.2f} | yes |",
        f"| full `torch.sort` (stable), for reference | {sel['sort_s']:.2f} | yes |",
        f"| `torch.quantile` (the naive way) | - | fails: {sel['quantile'] or 'ran'} |",
        "",
        f"### N:M channel permutation (2:4) on LeNet-300-100, trained 1 epoch on "
        f"Fashion-MNIST (seeds {', '.join(str(r['seed']) for r in perm)})",
        "",
        "Kept magnitude = share of the layer's sum |w| that the 2:4 mask keeps. Accuracy on the "
        "10K test set after one-shot 2:4 pruning of fc1, fc2 and fc3, no fine-tuning (the "
        "permuted dense network computes the same outputs: checked).",
        "",
        "| seed | fc2 kept: original | permuted | fc3 kept: original | permuted | dense acc | "
        "2:4 acc | 2:4 acc, permuted |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in perm:
        lines.append(
            f"| {r['seed']} | {r['fc2 before']:.4f} | {r['fc2 after']:.4f} | {r['fc3 before']:.4f}"
            f" | {r['fc3 after']:.4f} | {r['dense_acc']:.4f} | {r['acc_24']:.4f} | "
            f"{r['acc_24_perm']:.4f} |"
        )
    mean = {
        k: statistics.mean(r[k] for r in perm) for k in perm[0] if k != "seed" and "shape" not in k
    }
    lines += [
        f"| mean | {mean['fc2 before']:.4f} | {mean['fc2 after']:.4f} | {mean['fc3 before']:.4f} "
        f"| {mean['fc3 after']:.4f} | {mean['dense_acc']:.4f} | {mean['acc_24']:.4f} | "
        f"{mean['acc_24_perm']:.4f} |",
        "",
        f"Mean over seeds: the permutation keeps {100 * (mean['fc2 after'] - mean['fc2 before']):.1f}"
        f" (fc2) and {100 * (mean['fc3 after'] - mean['fc3 before']):.1f} (fc3) more points of "
        f"magnitude; accuracy after 2:4 changes by {100 * (mean['acc_24_perm'] - mean['acc_24']):+.1f}"
        f" points, higher in {sum(r['acc_24_perm'] > r['acc_24'] for r in perm)} of {len(perm)} "
        "seeds (per-seed differences: "
        + ", ".join(f"{100 * (r['acc_24_perm'] - r['acc_24']):+.1f}" for r in perm)
        + "). More kept magnitude is not the same as more accuracy.",
        "",
        f"Search CPU time: fc2 (100x300) {mean['fc2 search_s']:.2f} s, fc3 (10x100) "
        f"{mean['fc3 search_s']:.2f} s; one training epoch {mean['train_s']:.0f} s (wall).",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--min-run-time", type=float, default=1.0, help="CPU s per timed path")
    parser.add_argument("--topk-size", type=int, default=17_000_000, help="scores for top-k")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="LeNet seeds")
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()
    over = overhead(args)
    sel = selection(args)
    perm = permutation(args)
    text = markdown(over, sel, perm, time.perf_counter() - start)
    print("\n" + text)
    if args.write:
        write_section(SECTION, text, ROOT / "docs" / "benchmarks.md")


if __name__ == "__main__":
    main()
