"""Long-sequence demo: the small character-level Transformer on the Python standard library
text at context 2048 on CPU, with dense causal attention against two sparse patterns, for the
same number of steps.

    python benchmarks/attention_longseq.py             # the docs/results.md table (~30 min)
    python benchmarks/attention_longseq.py --steps 5 --eval-sequences 2   # smoke run

Settings (each attention is intersected with causal() by the model):

- dense: plain causal attention (backend "auto" -> masked SDPA)
- Longformer: ``local(w) | global_tokens([0])``
- Sparse Transformer (strided, Child et al. 2019): ``causal() & (local(k) | strided(k))``

The backend is "auto" (sparse kernels only where they are faster: see
``sparsetorch.attention.choose``); the table names the one it took.

Same seed, same initial weights, same batches; AdamW, constant learning rate after a linear
warm-up, gradient clipping 1.0. The settings train in lockstep (one step of each in turn), so a
shared machine's load falls on all of them alike. Reported: validation bits per character (mean
next-byte cross-entropy / ln 2 on the first ``--eval-sequences`` validation sequences), training
tokens per second (wall, and per process-CPU second) and the peak growth of the resident set
during one training step after a warm-up step, measured in a separate process per setting
with ``MALLOC_MMAP_THRESHOLD_`` fixed so freed blocks go back to the system (the kernel's
high-water mark is reset before the step). Times are taken without that setting, which makes
every large allocation an mmap and slows the allocation-heavy reference backend ~1.7x.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import time
import warnings

import torch
import torch.nn.functional as F

from sparsetorch.attention import causal, choose, global_tokens, local, strided
from sparsetorch.data import load
from sparsetorch.models.transformer import CausalTransformer

MALLOC_ENV = "MALLOC_MMAP_THRESHOLD_"


def rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(field)


def settings(w: int, k: int) -> dict[str, object]:
    return {
        "dense (causal)": None,
        f"local({w}) | global_tokens([0])": local(w) | global_tokens([0]),
        f"causal() & (local({k}) | strided({k}))": causal() & (local(k) | strided(k)),
    }


@torch.no_grad()
def bits_per_char(model, x: torch.Tensor, y: torch.Tensor, batch: int) -> float:
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(x), batch):
        logits = model(x[i : i + batch])
        total += F.cross_entropy(
            logits.flatten(0, 1), y[i : i + batch].flatten(), reduction="sum"
        ).item()
        count += y[i : i + batch].numel()
    model.train()
    return total / count / math.log(2)


class Run:
    """One setting: its model, optimizer, and the time its training steps took."""

    def __init__(self, name: str, attention, args) -> None:
        torch.manual_seed(args.seed)  # the same initial weights for every setting
        self.name = name
        self.model = CausalTransformer(
            256,
            args.context,
            d_model=args.d_model,
            n_layers=args.layers,
            n_heads=args.heads,
            attention=attention,
            backend="auto",
        )
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=args.lr, weight_decay=0.1)
        self.losses: list[float] = []
        self.wall = self.cpu = 0.0

    def step(self, x: torch.Tensor, y: torch.Tensor, lr: float) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        for group in self.opt.param_groups:
            group["lr"] = lr
        loss = F.cross_entropy(self.model(x).flatten(0, 1), y.flatten())
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        self.losses.append(loss.item())
        self.wall += time.perf_counter() - wall
        self.cpu += time.process_time() - cpu


def peak_step_mib(run: Run, x: torch.Tensor, y: torch.Tensor) -> float:
    """Resident-set growth at the peak of one training step (high-water mark reset before)."""
    run.step(x, y, 0.0)  # warm-up: optimizer state, layouts
    before = rss_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    run.step(x, y, 0.0)
    return (rss_kib("VmHWM") - before) / 1024


def peak_in_subprocess(index: int) -> float:
    cmd = [sys.executable, __file__, *sys.argv[1:], "--peak-of", str(index)]
    env = {**os.environ, MALLOC_ENV: "131072"}
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    return float(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--context", type=int, default=2048)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--window", type=int, default=128, help="w of the Longformer pattern")
    parser.add_argument("--stride", type=int, default=64, help="k of the strided pattern")
    parser.add_argument("--eval-sequences", type=int, default=32)
    parser.add_argument("--max-bytes", type=int, default=4_000_000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--peak-of", type=int, help=argparse.SUPPRESS)  # internal: a setting
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    data = load("text", context=args.context, max_bytes=args.max_bytes, seed=args.seed)
    if args.peak_of is not None:  # the memory subprocess
        name, attention = list(settings(args.window, args.stride).items())[args.peak_of]
        x, y = data.train.x[: args.batch], data.train.y[: args.batch]
        print(peak_step_mib(Run(name, attention, args), x, y))
        return
    print(
        f"torch {torch.__version__}, {args.threads} thread(s); text: {len(data.train)} train / "
        f"{len(data.val)} val sequences of {args.context} bytes; model d={args.d_model} "
        f"L={args.layers} H={args.heads}; {args.steps} steps of {args.batch} sequences\n"
    )
    runs = [Run(name, att, args) for name, att in settings(args.window, args.stride).items()]
    order = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(args.seed))
    began = time.perf_counter()
    for step in range(args.steps):  # lockstep: every setting sees the same machine load
        idx = order[(step * args.batch) % len(order) :][: args.batch]
        x, y = data.train.x[idx], data.train.y[idx]  # (B, T): the same batches for all
        lr = args.lr * min(1.0, (step + 1) / args.warmup)
        for run in runs:
            run.step(x, y, lr)
    minutes = (time.perf_counter() - began) / 60
    x_val, y_val = data.val.x[: args.eval_sequences], data.val.y[: args.eval_sequences]
    tokens = args.steps * args.batch * args.context
    print(
        "| attention | backend | density | val bits/char | train bits/char (last 10) | "
        "tokens/s | tokens/CPU-s | peak MiB (one step) |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for index, run in enumerate(runs):
        bpc = bits_per_char(run.model, x_val, y_val, args.batch)
        train_bpc = sum(run.losses[-10:]) / len(run.losses[-10:]) / math.log(2)
        speed, cpu_speed = tokens / run.wall, tokens / run.cpu
        peak = peak_in_subprocess(index)
        backend = choose(run.model.pattern, args.context, torch.device("cpu"), requires_grad=True)
        print(
            f"| {run.name.replace('|', chr(92) + '|')} | {backend} | "
            f"{run.model.pattern.density(args.context):.4f} | {bpc:.3f} | {train_bpc:.3f} | "
            f"{speed:.0f} | {cpu_speed:.0f} | {peak:.0f} |",
            flush=True,
        )
    print(f"\n(training {minutes:.1f} min)")


if __name__ == "__main__":
    main()
