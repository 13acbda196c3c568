"""Our two Triton 2:4 decode kernels against dense, per M: which one to run up to which M.

    PYTHONPATH=src python3 benchmarks/nm_decode.py    # GPU machine, ~1 minute

For the Linear shapes of 7-8B LLM layers (out x in) and M = 1..64 rows, bf16: dense
``F.linear``, the gather GEMV and the skinny GEMM of ``kernels/nm_triton.py`` (each autotuned
for the shape before timing), checked against dense first. Times are GPU times (median of
triton's ``do_bench``, which flushes L2 between calls, so the weight streams from HBM as in
decode); speed-up = dense / kernel in the same run. ``GEMV_MAX_M`` in nm_triton.py is the
largest M where the GEMV wins.
"""

from __future__ import annotations

import torch
from triton.testing import do_bench

from sparsetorch.formats import NM
from sparsetorch.kernels import nm_triton

SHAPES = [(4096, 4096), (14336, 4096), (4096, 14336)]
MS = [1, 2, 4, 8, 16, 32, 64]


def two_four(n: int, k: int) -> torch.Tensor:
    w = torch.randn(n, k // 4, 4, device="cuda", dtype=torch.bfloat16)
    keep = w.abs().topk(2, -1).indices
    return (w * torch.zeros_like(w, dtype=torch.bool).scatter_(-1, keep, True)).reshape(n, k)


def main() -> None:
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}\n")
    print("| out x in | M | dense µs | GEMV µs | skinny µs | GEMV | skinny |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for n, k in SHAPES:
        w = two_four(n, k)
        nm = NM.from_dense(w, 2, 4)
        values, meta = nm.values, nm.meta
        for m in MS:
            x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
            ref = torch.nn.functional.linear(x, w).float()
            runs = {
                "dense": lambda x=x: torch.nn.functional.linear(x, w),
                "gemv": lambda x=x: nm_triton.nm_linear_triton(x, values, meta, gemv_max_m=64),
                "skinny": lambda x=x: nm_triton.nm_linear_triton(x, values, meta, gemv_max_m=0),
            }
            t = {}
            for name, fn in runs.items():
                if name == "gemv" and m > 16:  # the GEMV's MB loop is unrolled: M <= 16
                    t[name] = float("nan")
                    continue
                err = ((fn().float() - ref).norm() / ref.norm()).item()  # autotunes
                if not err < 1e-2:
                    raise AssertionError(f"{name} {n}x{k} M={m}: relative error {err:.2e}")
                t[name] = do_bench(fn, warmup=25, rep=100, return_mode="median") * 1e3
            d = t["dense"]
            ratio = lambda v: f"{d / v:.2f}x" if v == v else "-"  # noqa: E731
            us = lambda v: f"{v:.1f}" if v == v else "-"  # noqa: E731
            print(
                f"| {n}x{k} | {m} | {d:.1f} | {us(t['gemv'])} | {us(t['skinny'])} "
                f"| {ratio(t['gemv'])} | {ratio(t['skinny'])} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
