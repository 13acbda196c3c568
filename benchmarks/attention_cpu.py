"""Sparse attention on CPU: time and peak memory of the reference / flex backends against dense
masked SDPA, for n = 1k, 4k, 16k (B=1, H=4, D=64, float32).

    python benchmarks/attention_cpu.py                       # the docs/benchmarks.md table
    python benchmarks/attention_cpu.py --n 1024 --pattern "local(64) | global_tokens([0])"

Forward calls (inference, no autograd) and, with ``--backward``, forward + backward. Times are
medians over ``--repeats`` calls after one warm-up call (the warm-up compiles FlexAttention; its
time is reported as "first call"); process CPU time is shown next to wall time, the figure to
read on a machine shared with other jobs (with the default ``--threads 1`` it is what wall time
would be on an idle machine).

Peak memory is the growth of the resident set during one call: the kernel's high-water mark
is reset (``/proc/self/clear_refs``) just before the call and read after it. It is measured in a
separate process per (n, backend) with ``MALLOC_MMAP_THRESHOLD_`` fixed at 128 KiB, so that
glibc returns every large freed block to the system and a call cannot reuse memory unseen;
times are measured without that setting (it makes every large allocation an mmap and costs the
allocation-heavy reference backend up to ~1.7x).
"dense scores" is the size of the n x n float32 score matrix of all heads, B·H·n²·4 bytes — the
yardstick of the memory goal (the reference backend must stay under 5% of it at n = 16k, local(64)).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings

import torch

from sparsetorch.attention import parse, sparse_attention

MALLOC_ENV = "MALLOC_MMAP_THRESHOLD_"


def rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def peak_growth_mib(call) -> float:
    """Resident-set growth (MiB) at the peak of ``call()``."""
    before = rss_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the high-water mark to the current RSS
    call()
    return (rss_kib("VmHWM") - before) / 1024


def timed(call, repeats: int) -> tuple[float, float]:
    """(median wall ms, median process-CPU ms)."""
    walls, cpus = [], []
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        call()
        walls.append((time.perf_counter() - w) * 1e3)
        cpus.append((time.process_time() - c) * 1e3)
    return statistics.median(walls), statistics.median(cpus)


def make_call(backend: str, pattern, n: int, args):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn((1, args.heads, n, args.dim), generator=g) for _ in range(3))

    def call():
        if args.backward:
            qq, kk, vv = (t.clone().requires_grad_() for t in (q, k, v))
            sparse_attention(qq, kk, vv, pattern, backend=backend).sum().backward()
        else:
            with torch.no_grad():
                sparse_attention(q, k, v, pattern, backend=backend)

    return call


def measure_time(backend: str, pattern, n: int, args) -> dict:
    call = make_call(backend, pattern, n, args)
    start = time.perf_counter()
    call()  # warm-up: layouts, masks, FlexAttention compile
    first = time.perf_counter() - start
    wall, cpu = timed(call, args.repeats if n < 16384 or backend != "dense" else 1)
    return {"first_s": first, "wall_ms": wall, "cpu_ms": cpu}


def measure_peak_in_subprocess(backend: str, n: int) -> float:
    """Peak MiB of one warm call, in a fresh process with the fixed mmap threshold."""
    argv = [a for a in sys.argv[1:]]
    cmd = [sys.executable, __file__, *argv, "--peak-of", backend, str(n)]
    env = {**os.environ, MALLOC_ENV: "131072"}
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    return float(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, nargs="+", default=[1024, 4096, 16384])
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--pattern", default="local(64)")
    parser.add_argument("--backends", nargs="+", default=["dense", "reference", "flex"])
    parser.add_argument("--backward", action="store_true", help="time forward + backward")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--peak-of", nargs=2, help=argparse.SUPPRESS)  # internal: backend n
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    pattern = parse(args.pattern)
    if args.peak_of:  # the memory subprocess
        backend, n = args.peak_of[0], int(args.peak_of[1])
        call = make_call(backend, pattern, n, args)
        call()
        print(peak_growth_mib(call))
        return
    began = time.perf_counter()
    print(
        f"torch {torch.__version__}, {platform.machine()}, {args.threads} thread(s), "
        f"B=1 H={args.heads} D={args.dim} float32, pattern {pattern!r}, "
        f"{'forward+backward' if args.backward else 'forward'}\n"
    )
    print(
        "| n | density | backend | wall ms | CPU ms | first call s | peak MiB | "
        "dense scores MiB | peak / dense scores |"
    )
    print("|---:|---:|---|---:|---:|---:|---:|---:|---:|")
    for n in args.n:
        scores = args.heads * n * n * 4 / 2**20
        for backend in args.backends:
            r = measure_time(backend, pattern, n, args)
            r["peak_mib"] = measure_peak_in_subprocess(backend, n)
            print(
                f"| {n} | {pattern.density(n):.4f} | {backend} | {r['wall_ms']:.1f} | "
                f"{r['cpu_ms']:.1f} | {r['first_s']:.1f} | {r['peak_mib']:.1f} | {scores:.0f} | "
                f"{r['peak_mib'] / scores:.2%} |",
                flush=True,
            )
    print(f"\n({time.perf_counter() - began:.0f} s)")


if __name__ == "__main__":
    main()
