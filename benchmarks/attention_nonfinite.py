"""What containing non-finite keys and values costs on the CPU when there are none (the
common case): the dense and reference backends as shipped (a finiteness check of k and v; on
the CPU nothing else runs unless a position is bad) against the same calls with the check
removed, in the same process (ratios; B=1, H=4, D=64, float32).

    python benchmarks/attention_nonfinite.py --write          # the docs/benchmarks.md section
    python benchmarks/attention_nonfinite.py --n 2048

Times are medians of process CPU time over ``--repeats`` calls of each, alternated, after one
warm-up, with one intra-op thread: on a machine shared with other jobs, CPU time is the figure
to read.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from sparsetorch.attention import parse, sparse_attention
from sparsetorch.attention.backends import nonfinite


def cpu_ms_pair(first, second, repeats: int) -> tuple[float, float]:
    """Median process CPU ms of two calls, timed alternately (a loaded machine drifts)."""
    first(), second()  # warm-up: masks, layouts
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for call, out in ((first, times[0]), (second, times[1])):
            start = time.process_time()
            call()
            out.append((time.process_time() - start) * 1e3)
    return statistics.median(times[0]), statistics.median(times[1])


def no_check(k, v):
    """The baseline: ``nonfinite.split`` as if it were absent (inputs used as they are)."""
    return k, v, None


def measure(n: int, pattern, backward: bool, repeats: int) -> list[tuple[str, float, float]]:
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 4, n, 64, generator=g) for _ in range(3))

    def run(backend):
        inputs = [t.clone().requires_grad_(backward) for t in (q, k, v)]
        if backward:
            sparse_attention(*inputs, pattern, backend=backend).sum().backward()
        else:
            with torch.no_grad():
                sparse_attention(*inputs, pattern, backend=backend)

    def without_check(backend):
        checking, nonfinite.split = nonfinite.split, no_check
        try:
            run(backend)
        finally:
            nonfinite.split = checking

    rows = []
    for backend in ("dense", "reference"):
        base, shipped = cpu_ms_pair(
            lambda b=backend: without_check(b), lambda b=backend: run(b), repeats
        )
        rows.append((backend, base, shipped))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, nargs="+", default=[1024, 4096])
    parser.add_argument("--pattern", default="local(64) | global_tokens([0])")
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    torch.set_num_threads(1)
    pattern = parse(args.pattern)
    lines = [
        "## Attention: containing non-finite keys and values",
        "",
        f"`python benchmarks/attention_nonfinite.py --write` on {time.strftime('%Y-%m-%d')}, "
        f"{platform.processor() or platform.machine()} with {os.cpu_count()} cores, torch "
        f"{torch.__version__}, one thread, "
        f"pattern `{args.pattern}`, B=1 H=4 D=64 float32, finite inputs; median process CPU "
        "ms of the calls with and without the check, alternated (a machine shared with other "
        "jobs: the ratio is the figure to read; differences of a few % are noise there).",
        "",
        "| n | backend | pass | without the check ms | shipped ms | ratio |",
        "|---|---|---|---|---|---|",
    ]
    for n in args.n:
        for backward in (False, True):
            which = "forward + backward" if backward else "forward"
            for name, base, shipped in measure(n, pattern, backward, args.repeats):
                lines.append(
                    f"| {n} | {name} | {which} | {base:.1f} | {shipped:.1f} | "
                    f"{shipped / base:.2f} |"
                )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        from benchmarks._docs import write_section

        write_section(lines[0][3:], text, Path(__file__).parents[1] / "docs" / "benchmarks.md")


if __name__ == "__main__":
    main()
