"""Sparse training and inference on the CPU: sparsetorch's CPU kernels (``st.accelerate_``,
``sparsify_(m, "csr")``) against dense, masked dense, torch's CSR and sparselab, in one run.

    python benchmarks/cpu_sparse.py             # all tables (about 20 minutes on 2 cores)
    python benchmarks/cpu_sparse.py --quick     # fewer shapes and repeats (about 5 minutes)
    python benchmarks/cpu_sparse.py --write     # and replace the "CPU sparse training and
                                                # inference" section of docs/benchmarks.md

Table 1, training step: one ``nn.Linear(4096, 4096)`` step, forward, loss = mean of squared
outputs, backward, ``torch.optim.Adam`` step (``zero_grad`` included), for batch 16 and 128 at
sparsity 0.9 / 0.95 / 0.99 (a random mask, uniform). Columns, all in the same process:

* dense          ``nn.Linear`` + Adam, no mask: the baseline (ms per step);
* masked dense   ``st.prune`` (masks kept by sparsetorch's optimizer hooks) + Adam;
* accelerated    ``st.prune`` then ``st.accelerate_``: the sparse kernels and the Adam step
                 over kept weights (torch.optim.Adam itself, its state in its own layout);
* sparselab      ``sparselab.SparseLinear(4096, 4096, sparsity=s)`` + Adam over its packed
                 values, when ``sparselab`` (0.2.2: ``pip install --no-deps sparselab==0.2.2``)
                 is installed; "-" otherwise. Measured in a child process of the same run,
                 against its own dense baseline (same shapes, same timing): sparselab ships its
                 own OpenMP runtime, and two runtimes in one process, each spinning two threads
                 on our two cores, made every configuration of that process erratic (up to 10x
                 slower, dense included).

Ratios are dense ms / path ms (> 1 is faster than dense). Table 2 splits the same steps into
forward, backward and optimizer step (where the time goes, and what the accelerated layer
avoids).

Table 3, inference: ``y = x W^T + b`` for a 4096x4096 weight at 90 / 95 / 99% sparsity, batch
1..64, under ``torch.no_grad()``: torch's CSR (``(W_csr @ x.T).T + b``, MKL, built once) is the
baseline; ``sparsify_(lin, "csr")`` (the measured dispatcher over dense, torch CSR and our
kernels: what a user gets), our kernels called directly (``cpu_sparse`` path), dense
``F.linear`` and sparselab's forward (child process, its own torch CSR baseline). Ratios are
torch CSR ms / path ms.

Table 4, end to end: RigL at 90% (ERK, delta_t a quarter of the steps: two topology updates,
the runner's Adam at lr 1.2e-3) on
LeNet-300-100 (Fashion-MNIST, batch 60) and on the project's Transformer (``models/``, its
defaults: d_model 128, 2 layers; the ``text`` dataset, context 128, batch 60: the runner's
``--model transformer --dataset text``), against dense training of the same model: ms per training step
(zero_grad, forward, cross-entropy, backward, optimizer step / ``rigl.step()``), and the final
training loss of masked dense RigL and accelerated RigL on the same batches (equal to float
rounding: same masks, same losses).

Timing: wall time (``time.perf_counter``) per step with torch's default threads; the
configurations of one table row take turns step by step (round-robin, after warm-up, each round
starting one configuration later), and each figure is the median over the rounds, so that load
from other processes falls on all of them alike. The machine, torch version, threads and load average are printed with the tables.
"""

from __future__ import annotations

import argparse
import gc
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from _docs import write_section

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import sparsetorch as st
from sparsetorch.deploy import PATHS, Dispatcher
from sparsetorch.kernels.cpu import available, status

SECTION = "CPU sparse training and inference"
N = 4096


def _sparselab_version() -> str | None:
    """sparselab's version when it is installed, without importing it into this process."""
    if "--no-sparselab" in sys.argv:
        return None
    try:
        return importlib.metadata.version("sparselab")
    except importlib.metadata.PackageNotFoundError:
        return None


SPARSELAB = _sparselab_version()


def round_robin(fns: dict[str, Callable[[], object]], rounds: int, warmup: int = 2) -> dict:
    """{name: median seconds per call}, the calls of one round taking turns."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    order = list(fns)
    for r in range(rounds):
        # each round starts one configuration later: none always runs right after another
        # one's cache footprint
        for name in order[r % len(order) :] + order[: r % len(order)]:
            t0 = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


# ---- table 1 and 2: a training step --------------------------------------------------------
class Step:
    """One optimizer step of a layer; phase times (forward, backward, optimizer) recorded."""

    def __init__(self, layer: nn.Module, x: torch.Tensor) -> None:
        self.layer, self.x = layer, x
        self.opt = torch.optim.Adam(layer.parameters(), lr=1e-3)
        self.phases: dict[str, list[float]] = {"forward": [], "backward": [], "step": []}

    def __call__(self) -> None:
        t0 = time.perf_counter()
        self.opt.zero_grad()
        loss = self.layer(self.x).square().mean()
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        self.opt.step()
        t3 = time.perf_counter()
        for name, t in zip(self.phases, (t1 - t0, t2 - t1, t3 - t2)):
            self.phases[name].append(t)


def training_layers(sparsity: float) -> dict[str, nn.Module]:
    torch.manual_seed(0)
    layers = {"dense": nn.Linear(N, N)}
    masked = nn.Linear(N, N)
    st.prune(masked, sparsity=sparsity, criterion="random")
    layers["masked dense"] = masked
    fast = nn.Linear(N, N)
    st.prune(fast, sparsity=sparsity, criterion="random")
    st.accelerate_(fast)
    layers["accelerated"] = fast
    return layers


# ---- sparselab, in a child process ---------------------------------------------------------
def peer(kind: str, batch: int, sparsity: float, rounds: int) -> float | None:
    """sparselab's ratio for one table cell (dense / sparselab for a training step, torch CSR /
    sparselab for inference), measured with its own baseline in a child process: sparselab
    ships its own OpenMP runtime, whose spinning threads, in one process with torch's, left
    two threads of both stalled on our two cores (every configuration of the same process
    measured up to 10x slower)."""
    if SPARSELAB is None:
        return None
    threads = str(torch.get_num_threads())
    cmd = [sys.executable, __file__, "--peer", kind, str(batch), str(sparsity), str(rounds)]
    cmd += ["--threads", threads]
    env = {**os.environ, "OMP_NUM_THREADS": threads}  # sparselab's runtime: as many threads
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, env=env)
    if out.returncode != 0:
        print(f"sparselab child failed: {out.stderr.strip().splitlines()[-1:]}", flush=True)
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])["ratio"]


def peer_main(kind: str, batch: int, sparsity: float, rounds: int) -> None:
    import sparselab

    torch.manual_seed(0)
    x = torch.randn(batch, N)
    layer = sparselab.SparseLinear(N, N, sparsity=sparsity)
    if kind == "train":
        steps = {"dense": Step(nn.Linear(N, N), x), "sparselab": Step(layer, x)}
        t = round_robin(steps, rounds)
        print(json.dumps({"ratio": t["dense"] / t["sparselab"]}))
        return
    lin = nn.Linear(N, N)
    st.prune(lin, sparsity=sparsity, criterion="random")
    w, b = lin.weight.detach().clone(), lin.bias.detach().clone()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch CSR is "beta"
        w_csr = w.to_sparse_csr()
    with torch.no_grad():
        fns = {"torch CSR": lambda: (w_csr @ x.T).T + b, "sparselab": lambda: layer(x)}
        t = round_robin(fns, rounds * 4)
    print(json.dumps({"ratio": t["torch CSR"] / t["sparselab"]}))


def training_table(batches, sparsities, rounds) -> tuple[list[str], list[str], dict]:
    names = ["dense", "masked dense", "accelerated"]
    extra = ["sparselab (own process)"] if SPARSELAB else []
    head = "| batch | sparsity | dense ms | " + " | ".join(names[1:] + extra) + " |"
    rows = [head, "|---:|---:|---:|" + "---:|" * (len(names) - 1 + len(extra))]
    phase_rows = [
        "| batch | sparsity | path | forward ms | backward ms | optimizer step ms | step ms |",
        "|---:|---:|---|---:|---:|---:|---:|",
    ]
    ratios = {}  # (batch, sparsity) -> {path: dense / path}
    for batch in batches:
        for sparsity in sparsities:
            x = torch.randn(batch, N)
            steps = {name: Step(layer, x) for name, layer in training_layers(sparsity).items()}
            t = round_robin(steps, rounds)
            ratios[batch, sparsity] = {n: t["dense"] / t[n] for n in names}
            cells = [
                f"{t[n] * 1e3:.1f}" if n == "dense" else f"{t['dense'] / t[n]:.2f}x" for n in names
            ]
            if extra:
                r = peer("train", batch, sparsity, rounds)
                cells.append("-" if r is None else f"{r:.2f}x")
            rows.append(f"| {batch} | {sparsity:.2f} | " + " | ".join(cells) + " |")
            print(rows[-1], flush=True)
            for name, s in steps.items():
                if name in ("dense", "accelerated"):
                    med = {p: statistics.median(v[2:]) * 1e3 for p, v in s.phases.items()}
                    phase_rows.append(
                        f"| {batch} | {sparsity:.2f} | {name} | {med['forward']:.1f} | "
                        f"{med['backward']:.1f} | {med['step']:.1f} | {t[name] * 1e3:.1f} |"
                    )
            del steps
            gc.collect()
    return rows, phase_rows, ratios


# ---- table 3: inference --------------------------------------------------------------------
def inference_table(sparsities, batches, rounds) -> tuple[list[str], dict]:
    names = ["sparsify_ csr", "cpu_sparse", "dense"]
    extra = ["sparselab (own process)"] if SPARSELAB else []
    rows = [
        "| sparsity | batch | torch CSR ms | " + " | ".join(names + extra) + " | sparsify_ chose |",
        "|---:|---:|---:|" + "---:|" * (len(names) + len(extra)) + "---|",
    ]
    ratios = {}  # (sparsity, batch) -> {path: torch CSR / path}
    for sparsity in sparsities:
        torch.manual_seed(1)
        lin = nn.Linear(N, N)
        st.prune(lin, sparsity=sparsity, criterion="random")
        st.remove_masks(lin)
        w, b = lin.weight.detach().clone(), lin.bias.detach().clone()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torch CSR is "beta"
            w_csr = w.to_sparse_csr()
        fast = PATHS.lookup("cpu_sparse")(w, b)
        deployed = nn.Sequential(nn.Linear(N, N))
        with torch.no_grad():
            deployed[0].weight.copy_(w)
            deployed[0].bias.copy_(b)
        st.sparsify_(deployed, "csr", dispatcher=Dispatcher(cache_file=None))
        for batch in batches:
            x = torch.randn(batch, N)
            fns = {
                "torch CSR": lambda: (w_csr @ x.T).T + b,
                "sparsify_ csr": lambda: deployed(x),
                "cpu_sparse": lambda: fast(x),
                "dense": lambda: torch.nn.functional.linear(x, w, b),
            }
            with torch.no_grad():
                torch.testing.assert_close(fast(x), x @ w.T + b, atol=1e-3, rtol=1e-4)
                deployed(x)  # the dispatcher measures this batch size once, before timing
                t = round_robin(fns, rounds * 4)
            chose = deployed[0].chosen.get(batch, "?")
            ratios[sparsity, batch] = {n: t["torch CSR"] / t[n] for n in names}
            cells = [f"{t['torch CSR'] / t[n]:.2f}x" for n in names]
            if extra:
                r = peer("infer", batch, sparsity, rounds)
                cells.append("-" if r is None else f"{r:.2f}x")
            rows.append(
                f"| {sparsity:.2f} | {batch} | {t['torch CSR'] * 1e3:.3f} | "
                + " | ".join(cells)
                + f" | {chose} |"
            )
            print(rows[-1], flush=True)
    return rows, ratios


# ---- table 4: end to end -------------------------------------------------------------------
def _batches(data, batch: int, steps: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    n = len(data.train)
    for _ in range(steps):
        idx = torch.randint(0, n, (batch,), generator=g)
        yield data.train.x[idx], data.train.y[idx]


def end_to_end(model_name: str, steps: int) -> tuple[list[str], dict]:
    from sparsetorch.data import load
    from sparsetorch.experiments.evaluate import loss_fn
    from sparsetorch.models import build

    if model_name == "lenet300":
        data, batch, label = load("fashion-mnist"), 60, "LeNet-300-100"
        options: dict = {}
    else:  # the runner's defaults for `--model transformer --dataset text`
        data, batch, label = load("text"), 60, "Transformer"
        options = {}
    runs = {}
    for name in ("dense", "RigL masked dense", "RigL accelerated"):
        torch.manual_seed(0)
        model = build(
            model_name, input_shape=data.input_shape, num_classes=data.num_classes, **options
        )
        opt = torch.optim.Adam(model.parameters(), lr=1.2e-3)
        algo = None
        if name != "dense":
            # two topology updates inside the run (RigL stops updating at 75% of the steps)
            delta_t = max(1, steps // 4)
            algo = st.RigL(model, opt, sparsity=0.9, total_steps=steps, delta_t=delta_t, seed=0)
        if name == "RigL accelerated":
            st.accelerate_(model)
        runs[name] = (model, opt, algo)
    times = {name: [] for name in runs}
    losses = {name: 0.0 for name in runs}
    for x, y in _batches(data, batch, steps):
        for name, (model, opt, algo) in runs.items():
            t0 = time.perf_counter()
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            if algo is None:
                opt.step()
            else:
                algo.step()
            times[name].append(time.perf_counter() - t0)
            losses[name] = loss.item()
    med = {name: statistics.median(ts[3:]) * 1e3 for name, ts in times.items()}
    equal = abs(losses["RigL accelerated"] - losses["RigL masked dense"]) <= 1e-4 * max(
        1.0, abs(losses["RigL masked dense"])
    )
    result = {"speed-up": med["dense"] / med["RigL accelerated"], "same loss": equal}
    rows = []
    for name in runs:
        rows.append(
            f"| {label} | {name} | {med[name]:.2f} | {med['dense'] / med[name]:.2f}x | "
            f"{losses[name]:.6f} |"
        )
        print(rows[-1], flush=True)
    return rows, {label: result}


def goals(train: dict, infer: dict, e2e: dict) -> list[str]:
    """The targets this benchmark was written for, against this run."""
    rows = ["| target | measured | met |", "|---|---|---|"]

    def add(target: str, value: float | None, need: float) -> None:
        if value is None:
            rows.append(f"| {target} | not measured | - |")
        else:
            rows.append(f"| {target} | {value:.2f}x | {'yes' if value >= need else 'no'} |")

    def step(batch: int, sparsity: float) -> float | None:
        found = train.get((batch, sparsity))
        return None if found is None else found["accelerated"]

    add("training step >= 3x dense, 90%, batch 16", step(16, 0.9), 3)
    add("training step >= 20x dense, 99%, batch 16", step(16, 0.99), 20)
    add("training step >= 2x dense, 90%, batch 128", step(128, 0.9), 2)
    at95 = [r for (sp, _), r in infer.items() if sp == 0.95]
    for name in ("sparsify_ csr", "cpu_sparse"):
        worst = min((r[name] for r in at95), default=None)
        add(f"inference >= 1.5x torch CSR, 95%, every batch measured ({name}, worst)", worst, 1.5)
    for label, r in e2e.items():
        same = "same final loss as masked dense RigL" if r["same loss"] else "LOSS DIFFERS"
        rows.append(
            f"| RigL 90% {label} faster than dense training | {r['speed-up']:.2f}x "
            f"({same}) | {'yes' if r['speed-up'] > 1 and r['same loss'] else 'no'} |"
        )
    return rows


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{torch.get_num_threads()} thread(s), CPU kernels: "
        f"{'built' if available() else 'NOT built (' + str(status()['error']) + ')'}, "
        f"sparselab: {SPARSELAB or 'not installed'}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer shapes and repeats")
    parser.add_argument("--write", action="store_true", help="write docs/benchmarks.md")
    parser.add_argument("--skip", nargs="*", default=(), choices=("train", "infer", "e2e"))
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's own)")
    parser.add_argument("--no-sparselab", action="store_true", help="leave sparselab out")
    parser.add_argument("--peer", nargs=4, help=argparse.SUPPRESS)  # the sparselab child
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.peer:
        kind, batch, sparsity, rounds = args.peer
        peer_main(kind, int(batch), float(sparsity), int(rounds))
        return
    start = time.time()
    load_before = os.getloadavg()[0]
    print(machine(), flush=True)
    rounds = 5 if args.quick else 11
    sections = []
    train_r, infer_r, e2e_r = {}, {}, {}
    if "train" not in args.skip:
        sp = (0.9, 0.99) if args.quick else (0.9, 0.95, 0.99)
        rows, phases, train_r = training_table((16, 128), sp, rounds)
        sections += ["### Training step, 4096x4096 Linear + Adam (dense ms / path ms)", "", *rows]
        sections += ["", "Where the time goes (medians of the same steps):", "", *phases, ""]
    if "infer" not in args.skip:
        bs = (1, 16, 64) if args.quick else (1, 4, 16, 64)
        sp = (0.95,) if args.quick else (0.9, 0.95, 0.99)
        rows, infer_r = inference_table(sp, bs, rounds)
        sections += ["### Inference, 4096x4096 (torch CSR ms / path ms)", "", *rows, ""]
    if "e2e" not in args.skip:
        head = [
            "| model | training | ms per step | speed-up vs dense | final train loss |",
            "|---|---|---:|---:|---:|",
        ]
        rows, e2e_r = end_to_end("lenet300", 60 if args.quick else 200)
        more, found = end_to_end("transformer", 20 if args.quick else 60)
        rows, e2e_r = rows + more, {**e2e_r, **found}
        sections += ["### End to end: RigL at 90% vs dense training", "", *head, *rows, ""]
    sections = ["### Against the targets", "", *goals(train_r, infer_r, e2e_r), "", *sections]
    took = time.time() - start
    load_after = os.getloadavg()[0]
    command = "python benchmarks/cpu_sparse.py" + (" --quick" if args.quick else "")
    command += f" --threads {args.threads}" if args.threads else ""
    text = "\n".join(
        [
            f"## {SECTION}",
            "",
            f"`{command} --write` ({machine()}; {time.strftime('%Y-%m-%d')}; {took / 60:.0f} "
            f"min; load average {load_before:.1f} before, {load_after:.1f} after: a machine "
            "shared with other jobs, so figures are medians of configurations taking turns). "
            "Method and columns: the script's docstring.",
            "",
            *sections,
        ]
    )
    print(text)
    if args.write:
        write_section(SECTION, text, ROOT / "docs" / "benchmarks.md")


if __name__ == "__main__":
    main()
