"""CPU benchmark of sparse formats @ dense.

    python benchmarks/formats.py            # print the tables
    python benchmarks/formats.py --write    # and replace the "Formats (CPU)" section of
                                            # docs/benchmarks.md

Table 1: a 4096x4096 float32 weight at sparsity 0.9 / 0.95 / 0.99 times a dense (4096, batch)
operand, batch 1 / 16 / 64. Paths, all timed in the same run:

* dense            torch dense matmul (BLAS) on the weight with its zeros;
* torch CSR        ``W.to_sparse_csr() @ X``, built once (int64 indices, MKL);
* CSR              ``CSR.from_dense(W) @ X``: our arrays (int32 indices) wrapped once into a
                   torch CSR tensor, same MKL kernel (its vector path for batch 1);
* CSR reference    ``CSR.matmul_reference``: gather + index_add in plain torch ops;
* torch BSR        ``W.to_sparse_bsr((16, 16)) @ X`` on a 16x16-block-sparse weight (MKL);
* BSR              ``BSR.from_dense(W, (16, 16)) @ X`` on the same weight (dispatches: MKL from
                   16 operand columns on, our batched block products below);
* BSR blocks       ``BSR.matmul_reference``: batched block products (bmm + index_add).

Unstructured weights keep each entry with probability 1 - sparsity; block weights keep each
block with that probability. Every path is checked against dense first.

Table 2 (the reason for BSR's dispatch): a 2048x2048 weight, 90% block-sparse, for block sizes
2..32 and operand widths k = 1..64: MKL's BSR kernel against our batched block products.

Timing: one thread (torch.set_num_threads(1)) and the CPU time of that thread per call
(time.thread_time, median after warm-up), not wall time: on a shared machine other processes
preempt us, which inflates wall time at random but not the CPU time our work consumes. On an
idle machine the two agree for one thread. Ratios are dense time / path time (> 1 is faster).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

from _docs import write_section

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from sparsetorch.formats import BSR, CSR

SECTION = "Formats (CPU)"
COLUMNS = ("torch CSR", "CSR", "CSR reference", "torch BSR", "BSR", "BSR blocks")
SWEEP_BLOCKS, SWEEP_WIDTHS = (2, 4, 8, 16, 32), (1, 8, 16, 64)


def unstructured(n: int, sparsity: float, g: torch.Generator) -> torch.Tensor:
    return torch.randn(n, n, generator=g) * (torch.rand(n, n, generator=g) >= sparsity)


def block_sparse(n: int, sparsity: float, block: int, g: torch.Generator) -> torch.Tensor:
    keep = torch.rand(n // block, n // block, generator=g) >= sparsity
    mask = keep.repeat_interleave(block, 0).repeat_interleave(block, 1)
    return torch.randn(n, n, generator=g) * mask


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


def main_table(args: argparse.Namespace) -> list[dict]:
    rows = []
    g = torch.Generator().manual_seed(0)
    for sparsity in args.sparsities:
        w, wb = unstructured(args.size, sparsity, g), block_sparse(args.size, sparsity, 16, g)
        torch_csr, ours_csr = w.to_sparse_csr(), CSR.from_dense(w)
        torch_bsr, ours_bsr = wb.to_sparse_bsr((16, 16)), BSR.from_dense(wb, (16, 16))
        for batch in args.batches:
            x = torch.randn(args.size, batch, generator=g)
            paths = {
                "dense": lambda: w @ x,
                "torch CSR": lambda: torch_csr @ x,
                "CSR": lambda: ours_csr @ x,
                "CSR reference": lambda: ours_csr.matmul_reference(x),
                "torch BSR": lambda: torch_bsr @ x,
                "BSR": lambda: ours_bsr @ x,
                "BSR blocks": lambda: ours_bsr.matmul_reference(x),
            }
            for name, fn in paths.items():  # correctness first
                want = (wb if "BSR" in name else w) @ x
                torch.testing.assert_close(fn(), want, rtol=1e-4, atol=1e-3, msg=name)
            t = {name: median_s(fn, args.min_run_time) for name, fn in paths.items()}
            rows.append({"sparsity": sparsity, "batch": batch, **t})
            cells = "  ".join(f"{c} {t['dense'] / t[c]:.2f}x" for c in COLUMNS)
            print(
                f"s={sparsity} batch={batch}: dense {t['dense'] * 1e3:.2f} ms  {cells}", flush=True
            )
    return rows


def bsr_sweep(args: argparse.Namespace) -> list[dict]:
    rows = []
    g = torch.Generator().manual_seed(1)
    for block in SWEEP_BLOCKS:
        w = block_sparse(2048, 0.9, block, g)
        ours, theirs = BSR.from_dense(w, (block, block)), w.to_sparse_bsr((block, block))
        for k in SWEEP_WIDTHS:
            x = torch.randn(2048, k, generator=g)
            t = {
                "dense": median_s(lambda: w @ x, args.min_run_time / 4),
                "torch BSR": median_s(lambda: theirs @ x, args.min_run_time / 4),
                "BSR blocks": median_s(lambda: ours.matmul_reference(x), args.min_run_time / 4),
            }
            rows.append({"block": block, "k": k, **t})
            print(
                f"block {block} k={k}: " + "  ".join(f"{n} {v * 1e3:.3f} ms" for n, v in t.items())
            )
    return rows


def markdown(rows: list[dict], sweep: list[dict], args: argparse.Namespace, seconds: float) -> str:
    cpu = platform.processor() or platform.machine()
    lines = [
        f"## {SECTION}",
        "",
        f"`python benchmarks/formats.py --write` (torch {torch.__version__}, {cpu}, 1 thread, "
        f"CPU time of the thread per call, median; {seconds:.0f} s). Ratios are dense time / "
        "path time in the same run: > 1 is faster than dense. Paths and the timing method are "
        "described in the script's docstring.",
        "",
        f"{args.size}x{args.size} float32 weight @ dense ({args.size}, batch); the BSR columns use "
        "a 16x16-block-sparse weight of the same sparsity:",
        "",
        "| sparsity | batch | dense ms | " + " | ".join(COLUMNS) + " |",
        "|---:|---:|---:|" + "---:|" * len(COLUMNS),
    ]
    for r in rows:
        cells = " | ".join(f"{r['dense'] / r[c]:.2f}x" for c in COLUMNS)
        lines.append(f"| {r['sparsity']:.2f} | {r['batch']} | {r['dense'] * 1e3:.2f} | {cells} |")
    lines += [
        "",
        "BSR @ dense (2048, k), 2048x2048 weight 90% block-sparse: MKL (`torch BSR`) against our "
        "batched block products (`BSR blocks`), as dense time / path time:",
        "",
        "| block | " + " | ".join(f"k={k} MKL | k={k} blocks" for k in SWEEP_WIDTHS) + " |",
        "|---:|" + "---:|" * (2 * len(SWEEP_WIDTHS)),
    ]
    for block in SWEEP_BLOCKS:
        cells = []
        for r in (r for r in sweep if r["block"] == block):
            cells += [f"{r['dense'] / r[c]:.2f}x" for c in ("torch BSR", "BSR blocks")]
        lines.append(f"| {block}x{block} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description="CPU benchmark of sparse formats @ dense")
    parser.add_argument("--size", type=int, default=4096, help="rows = cols of the weight")
    parser.add_argument("--sparsities", type=float, nargs="+", default=[0.9, 0.95, 0.99])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--min-run-time", type=float, default=0.2, help="CPU s per path")
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", message=r"Sparse \w+ tensor support is in beta")
    start = time.perf_counter()
    rows, sweep = main_table(args), bsr_sweep(args)
    text = markdown(rows, sweep, args, time.perf_counter() - start)
    print("\n" + text)
    if args.write:
        write_section(SECTION, text, ROOT / "docs" / "benchmarks.md")


if __name__ == "__main__":
    main()
