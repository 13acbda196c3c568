"""GPU benchmark for sparse inference paths. Prints a markdown table.

    python benchmarks/gpu.py [--quick] [--out FILE]

All ratios are dense time / path time measured in the same run (median of triton's do_bench,
or CUDA events when Triton is missing). ">1" means the sparse path is faster.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from sparsetorch.deploy import PATHS, Dispatcher, SparseLinear


def bench(fn) -> float:
    try:
        from triton.testing import do_bench

        return do_bench(fn, warmup=10, rep=40, return_mode="median") / 1e3
    except ImportError:
        start, end = torch.cuda.Event(True), torch.cuda.Event(True)
        times = []
        for _ in range(30):
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        return statistics.median(times[5:])


def two_four(n: int, k: int, dtype=torch.bfloat16) -> torch.Tensor:
    w = torch.randn(n, k // 4, 4, device="cuda", dtype=dtype)
    keep = w.abs().topk(2, -1).indices
    return (w * torch.zeros_like(w, dtype=torch.bool).scatter_(-1, keep, True)).reshape(n, k)


TWO_FOUR_PATHS = ("dense", "semi_structured", "cslt", "cslt_graph", "nm_triton", "nm_triton_graph")


def table_2to4(ms, shapes) -> list[str]:
    rows = [
        "| out x in | M | dense ms | semi_structured | cslt (cached alg) | cslt_graph | nm_triton "
        "| nm_triton_graph | dispatched |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    disp = Dispatcher(cache_file=None)
    for n, k in shapes:
        w = two_four(n, k)
        paths = {name: PATHS.lookup(name)(w, None) for name in TWO_FOUR_PATHS}
        lin = torch.nn.Linear(k, n, bias=False, device="cuda", dtype=torch.bfloat16)
        with torch.no_grad():
            lin.weight.copy_(w)
        sparse_linear = SparseLinear(lin, list(paths), disp)
        for m in ms:
            x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
            t = {}
            for name, path in paths.items():
                if name.startswith("nm_triton") and m > 64:  # decode kernels only
                    t[name] = float("nan")
                    continue
                try:
                    t[name] = bench(lambda p=path: p(x))
                except Exception as exc:  # report, don't die: a path may refuse a shape
                    print(f"# {name} {n}x{k} M={m}: {type(exc).__name__}: {exc}", file=sys.stderr)
                    t[name] = float("nan")
            with torch.no_grad():
                sparse_linear(x)  # measure + decide once
                t["dispatched"] = bench(lambda: sparse_linear(x))
            d = t["dense"]
            cells = [f"{d / t[c]:.2f}x" if t[c] == t[c] else "n/a" for c in TWO_FOUR_PATHS[1:]]
            choice = sparse_linear.chosen.get(m, "?")
            rows.append(
                f"| {n}x{k} | {m} | {d * 1e3:.3f} | {' | '.join(cells)} | {d / t['dispatched']:.2f}x ({choice}) |"
            )
            print(rows[-1], flush=True)
    return rows


def table_bsr(size: int, densities, blocks) -> list[str]:
    """W (size x size, random whole blocks kept) times X (size x size): dense ``w @ x``, torch's
    BSR ``wb @ x``, and ours (kernels/bsr_triton.py) as y^T = x @ W.T with x = X.T (a view:
    the same product; "ours" column) and with x row-major (the Linear case, against dense
    F.linear on the same x). Ours is checked against dense before it is timed. "x tiles into
    SMs": the bytes of x the kernel loads (every stored block reads its bs columns of x for all
    rows: nnzb * bs * size * 2) per second, row-major case; compare ``l2_read.py``."""
    from sparsetorch.formats import BSR
    from sparsetorch.kernels import bsr_triton

    rows = [
        "| size | block | density | dense ms | torch bsr ms | torch bsr | ours ms | ours "
        "| ours, x row-major | x tiles into SMs, TB/s | ours config (x = X^T; row-major) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for block in blocks:
        for dens in densities:
            nb = size // block
            keep = torch.rand(nb, nb, device="cuda") < dens
            w = torch.randn(size, size, device="cuda", dtype=torch.bfloat16)
            w = w * keep.repeat_interleave(block, 0).repeat_interleave(block, 1)
            x = torch.randn(size, size, device="cuda", dtype=torch.bfloat16)  # X (in, N)
            wb = w.to_sparse_bsr((block, block))
            td = bench(lambda: w @ x)
            tb = bench(lambda: wb @ x)
            bsr = BSR.from_dense(w, (block, block))
            v, crow, col = bsr.values, bsr.row_ptr, bsr.col_indices
            xr = x.T.contiguous()  # (N, in) row-major
            cells, configs = [], []
            for xin in (x.T, xr):
                ours = lambda xin=xin: bsr_triton.bsr_linear_triton(xin, v, crow, col, None, size)  # noqa: E731
                ref = torch.nn.functional.linear(xin, w).float()  # (N, out)
                err = (
                    (ours().float() - ref).norm() / ref.norm().clamp_min(1e-6)
                ).item()  # autotunes
                if not err < 1e-2:
                    raise AssertionError(
                        f"bsr_triton wrong at block {block}, {dens:.0%}: {err:.2e}"
                    )
                configs.append(bsr_triton.best_config())
                cells.append(bench(ours))
            td_rows = bench(lambda: torch.nn.functional.linear(xr, w))
            cfg = "; ".join(
                f"BM {c['BLOCK_M']} {'W left' if c['W_LEFT'] else 'x left'} "
                f"w{c['num_warps']} s{c['num_stages']}"
                for c in configs
            )
            rows.append(
                f"| {size}^3 | {block} | {dens:.0%} | {td * 1e3:.3f} | {tb * 1e3:.3f} "
                f"| {td / tb:.2f}x | {cells[0] * 1e3:.3f} | {td / cells[0]:.2f}x "
                f"| {td_rows / cells[1]:.2f}x | {v.shape[0] * block * size * 2 / cells[1] / 1e12:.2f} "
                f"| {cfg} |"
            )
            print(rows[-1], flush=True)
    return rows


def table_bsr_train(size: int, densities, block: int) -> list[str]:
    """A training step of y = x @ W.T, x (size, size) row-major, W block-sparse: forward and
    backward (dx and dW at the stored blocks) through ``torch.ops.sparsetorch.bsr_linear``,
    against dense F.linear's forward and backward; and dW alone: the Triton kernel, the
    gathered-copy torch reference, and dense ``dy.T @ x``. Checked against dense first."""
    from sparsetorch.formats import BSR
    from sparsetorch.kernels import bsr_triton

    rows = [
        "| size | block | density | dense fwd+bwd ms | ours fwd+bwd ms | speed-up | dense dW ms "
        "| ours dW ms | dW speed-up | gathered dW ms | ours fwd ms | ours dx ms | transpose ms | pattern ms |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for dens in densities:
        nb = size // block
        keep = torch.rand(nb, nb, device="cuda") < dens
        w = torch.randn(size, size, device="cuda", dtype=torch.bfloat16) / size**0.5
        w = w * keep.repeat_interleave(block, 0).repeat_interleave(block, 1)
        bsr = BSR.from_dense(w, (block, block))
        values = bsr.values.clone().requires_grad_()
        crow, col = bsr.row_ptr, bsr.col_indices
        x = torch.randn(size, size, device="cuda", dtype=torch.bfloat16, requires_grad=True)
        dy = torch.randn(size, size, device="cuda", dtype=torch.bfloat16)
        wd = w.clone().requires_grad_()

        def dense_step():
            y = torch.nn.functional.linear(x, wd)
            return torch.autograd.grad(y, (x, wd), dy)

        def ours_step():
            y = torch.ops.sparsetorch.bsr_linear(x, values, crow, col, None, size)
            return torch.autograd.grad(y, (x, values), dy)

        (ex, ew), (gx, gv) = dense_step(), ours_step()
        mask = keep.repeat_interleave(block, 0).repeat_interleave(block, 1)
        gw = BSR(crow, col, gv, (size, size)).to_dense().float()
        for name, got, ref in (("dx", gx, ex), ("dW", gw, ew.float() * mask)):
            err = ((got.float() - ref.float()).norm() / ref.float().norm()).item()
            if not err < 2e-2:
                raise AssertionError(f"bsr backward {name} wrong at {dens:.0%}: {err:.2e}")
        xd = x.detach()
        td, to = bench(dense_step), bench(ours_step)
        tdw = bench(lambda: dy.T @ xd)
        tow = bench(lambda: bsr_triton.bsr_weight_grad_triton(xd, dy, crow, col, block))
        tgw = bench(lambda: bsr_triton.bsr_weight_grad(xd, dy, crow, col, block))
        # the step's parts: forward, dx = dy W through W^T (transposed beforehand), and the
        # transpose: the values' gather a step does, and the pattern's, done once per pattern
        vd = values.detach()
        vt, crow_t, col_t = bsr_triton.transpose_bsr(vd, crow, col, nb)
        tf = bench(lambda: torch.ops.sparsetorch.bsr_linear(xd, vd, crow, col, None, size))
        tx = bench(lambda: torch.ops.sparsetorch.bsr_linear(dy, vt, crow_t, col_t, None, size))
        tt = bench(lambda: bsr_triton.transpose_bsr(vd, crow, col, nb))
        tp = bench(lambda: bsr_triton.transpose_pattern(crow, col, nb))
        rows.append(
            f"| {size}^3 | {block} | {dens:.0%} | {td * 1e3:.3f} | {to * 1e3:.3f} | {td / to:.2f}x "
            f"| {tdw * 1e3:.3f} | {tow * 1e3:.3f} | {tdw / tow:.2f}x | {tgw * 1e3:.3f} "
            f"| {tf * 1e3:.3f} | {tx * 1e3:.3f} | {tt * 1e3:.3f} | {tp * 1e3:.3f} |"
        )
        print(rows[-1], flush=True)
    return rows


def table_csr(size: int, densities) -> list[str]:
    rows = ["| size | density | dense fp32 ms | csr ms | speed-up |", "|---|---|---|---|---|"]
    for dens in densities:
        w = torch.randn(size, size, device="cuda") * (torch.rand(size, size, device="cuda") < dens)
        x = torch.randn(size, size, device="cuda")
        wc = w.to_sparse_csr()
        td = bench(lambda: w @ x)
        tc = bench(lambda: wc @ x)
        rows.append(f"| {size}^3 | {dens:.0%} | {td * 1e3:.3f} | {tc * 1e3:.3f} | {td / tc:.2f}x |")
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="fewer shapes (smoke run)")
    ap.add_argument("--out", type=Path, default=None, help="write the markdown here")
    ap.add_argument("--only", choices=["2:4", "bsr", "bsr-train", "csr"], default=None)
    ap.add_argument(
        "--blocks", type=lambda t: [int(b) for b in t.split(",")], default=[32, 64],
        help="BSR block sizes of the forward table (default 32,64)",
    )  # fmt: skip
    args = ap.parse_args()
    props = torch.cuda.get_device_properties(0)
    head = [
        f"Device: {props.name}; torch {torch.__version__}; cuSPARSELt "
        f"{getattr(torch.backends.cusparselt, 'version', lambda: None)()}; bf16 unless noted.",
        "",
    ]
    ms = [1, 16, 128, 2048] if args.quick else [1, 16, 128, 2048, 8192, 32768]
    shapes = [(4096, 4096)] if args.quick else [(4096, 4096), (14336, 4096), (4096, 14336)]
    out = head
    if args.only in (None, "2:4"):
        out += ["### 2:4 Linear (speed-up vs dense F.linear)", "", *table_2to4(ms, shapes), ""]
    if args.only in (None, "bsr"):
        out += [
            "### BSR matmul (torch Triton BSR; ours: kernels/bsr_triton.py)",
            "",
            *table_bsr(8192, [0.05, 0.10, 0.25], args.blocks),
            "",
        ]
    if args.only in (None, "bsr", "bsr-train"):
        out += [
            "### BSR training step (forward + backward; dW at the stored blocks)",
            "",
            *table_bsr_train(8192, [0.05, 0.10, 0.25], 64),
            "",
        ]
    if args.only in (None, "csr"):
        out += ["### CSR fp32 (cuSPARSE)", "", *table_csr(4096, [0.01, 0.05]), ""]
    text = "\n".join(out)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
