"""A persistent schedule for the BSR forward, against the library kernel in the same run.

    PYTHONPATH=src python3 benchmarks/bsr_persistent.py                  # GPU: 8192^3, block 64
    TRITON_INTERPRET=1 PYTHONPATH=src python3 benchmarks/bsr_persistent.py --check-only  # CPU

At 5% and block 64 a block row of an 8192-wide W holds about 6 stored blocks, so the library
kernel's programs (one output tile each: BLOCK_M rows of x times one block row) run loops of
about 6 steps, and each program pays its pipeline's fill and its 64 KB store of y before the
next starts on that SM (at BLOCK_M 512 one program fills an SM's shared memory). Here a fixed
number of programs (a multiple of the SM count) each walk a strided list of tiles in one flat
loop over (tile, stored block), so the loads of the next tile's blocks are issued while the
current tile finishes, and a tile's store is one step of the loop. Tiles are taken in the
library kernel's order (block row fastest), which keeps one x tile's rows in L2 for all W block
rows. A tile whose block row stores nothing takes one step with its loads masked (zeros).

Prints each config's time and speed-up against dense ``F.linear`` and the library's autotuned
``bsr_linear_triton``, all timed in this run on the same x and W; every output is checked
against dense first.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

import triton
import triton.language as tl

from sparsetorch.formats import BSR
from sparsetorch.kernels import bsr_triton


@triton.jit
def _bsr_persistent(
    x_ptr, v_ptr, crow_ptr, col_ptr, y_ptr,
    M, BLOCK_ROWS, PROGRAMS, TILES, TILES_PER_PROGRAM,
    stride_xm, stride_xk, stride_ym, stride_yn,
    BS: tl.constexpr, BLOCK_M: tl.constexpr, W_LEFT: tl.constexpr,
):  # fmt: skip
    pid = tl.program_id(0)
    tiles = TILES  # ceil(M / BLOCK_M) * BLOCK_ROWS
    offs_b = tl.arange(0, BS)  # (BS,) within a block
    # steps of this program: one per stored block of each of its tiles, at least one per tile
    steps = 0
    for j in range(0, TILES_PER_PROGRAM):
        t = pid + j * PROGRAMS
        r = t % BLOCK_ROWS
        n = tl.load(crow_ptr + r + 1) - tl.load(crow_ptr + r)
        steps += tl.where(t < tiles, tl.maximum(n, 1), 0)
    tile = pid
    row = tile % BLOCK_ROWS
    i = tl.load(crow_ptr + row).to(tl.int64)
    end = tl.load(crow_ptr + row + 1).to(tl.int64)
    if W_LEFT:
        acc = tl.zeros((BS, BLOCK_M), dtype=tl.float32)  # (out block, BM): y^T tile
    else:
        acc = tl.zeros((BLOCK_M, BS), dtype=tl.float32)  # (BM, out block): y tile
    for _ in range(0, steps):
        offs_m = (tile // BLOCK_ROWS) * BLOCK_M + tl.arange(0, BLOCK_M)  # (BM,)
        m_ok = offs_m < M
        has = i < end  # False only for an empty block row's one step
        c = tl.load(col_ptr + i, mask=has, other=0).to(tl.int64)
        k = c * BS + offs_b  # (BS,) input features
        w_blk = v_ptr + i * (BS * BS)
        x_rows = x_ptr + offs_m.to(tl.int64) * stride_xm  # (BM,)
        if W_LEFT:
            w = tl.load(w_blk + offs_b[:, None] * BS + offs_b[None, :], mask=has, other=0.0)
            xt = tl.load(
                x_rows[None, :] + k[:, None] * stride_xk, mask=m_ok[None, :] & has, other=0.0
            )  # (k, BM)
            acc = tl.dot(w, xt, acc)
        else:
            wt = tl.load(w_blk + offs_b[:, None] + offs_b[None, :] * BS, mask=has, other=0.0)
            xs = tl.load(
                x_rows[:, None] + k[None, :] * stride_xk, mask=m_ok[:, None] & has, other=0.0
            )  # (BM, k)
            acc = tl.dot(xs, wt, acc)
        i += 1
        if i >= end:  # the tile's last step: store it, move to this program's next tile
            offs_n = row * BS + offs_b  # (BS,) output features
            if W_LEFT:
                y_ptrs = (
                    y_ptr + offs_m.to(tl.int64)[None, :] * stride_ym + offs_n[:, None] * stride_yn
                )
                tl.store(y_ptrs, acc.to(y_ptr.dtype.element_ty), mask=m_ok[None, :])
                acc = tl.zeros((BS, BLOCK_M), dtype=tl.float32)
            else:
                y_ptrs = (
                    y_ptr + offs_m.to(tl.int64)[:, None] * stride_ym + offs_n[None, :] * stride_yn
                )
                tl.store(y_ptrs, acc.to(y_ptr.dtype.element_ty), mask=m_ok[:, None])
                acc = tl.zeros((BLOCK_M, BS), dtype=tl.float32)
            tile += PROGRAMS
            row = tile % BLOCK_ROWS
            live = tile < tiles
            i = tl.load(crow_ptr + row, mask=live, other=0).to(tl.int64)
            end = tl.load(crow_ptr + row + 1, mask=live, other=0).to(tl.int64)


def persistent(x, values, crow, col, out_features, block_m, w_left, programs, warps, stages):
    """y = x @ W.T, W in BSR (values, crow, col); x (M, in) -> y (M, out)."""
    m, bs = x.shape[0], values.shape[1]
    block_rows = out_features // bs
    y = torch.empty(m, out_features, dtype=x.dtype, device=x.device)
    tiles = math.ceil(m / block_m) * block_rows
    grid = (min(programs, tiles),)
    _bsr_persistent[grid](
        x, values, crow, col, y, m, block_rows, grid[0], tiles, -(-tiles // grid[0]),
        x.stride(0), x.stride(1), y.stride(0), y.stride(1),
        BS=bs, BLOCK_M=block_m, W_LEFT=w_left, num_warps=warps, num_stages=stages,
    )  # fmt: skip
    return y


def block_sparse(size, block, density, device, gen, dtype=torch.bfloat16):
    nb = size // block
    keep = torch.rand(nb, nb, device=device, generator=gen) < density
    keep[nb // 2] = False  # one empty block row: its tiles must come out zero
    w = torch.randn(size, size, device=device, generator=gen).to(dtype)
    return w * keep.repeat_interleave(block, 0).repeat_interleave(block, 1)


def check(device) -> None:
    """Every form against dense on small shapes (ragged M, an empty block row); float16,
    which Triton's CPU interpreter computes correctly (it has no bfloat16)."""
    gen = torch.Generator(device=device).manual_seed(0)
    for bs, block_m, w_left, programs in ((16, 16, False, 3), (32, 32, True, 5), (16, 32, True, 7)):
        w = block_sparse(8 * bs, bs, 0.3, device, gen, torch.float16)
        x = torch.randn(50, 8 * bs, device=device, generator=gen).to(torch.float16)
        b = BSR.from_dense(w, (bs, bs))
        got = persistent(x, b.values, b.row_ptr, b.col_indices, w.shape[0], block_m, w_left,
                         programs, 4, 2)  # fmt: skip
        ref = x.float() @ w.float().T
        err = ((got.float() - ref).norm() / ref.norm()).item()
        assert err < 1e-2, f"persistent bs {bs} BM {block_m} wrong: {err:.2e}"
        print(f"bs {bs} BM {block_m} W_LEFT {w_left} programs {programs}: rel. error {err:.1e}")


def ints(text: str) -> list[int]:
    return [int(t) for t in text.split(",")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=8192)
    ap.add_argument("--block", type=int, default=64)
    ap.add_argument("--densities", default="0.05,0.10")
    ap.add_argument("--check-only", action="store_true", help="correctness on small shapes")
    ap.add_argument("--block-m", default="64,128,256", help="comma list of BLOCK_M to sweep")
    ap.add_argument("--warps", default="4,8")
    ap.add_argument("--stages", default="3,4")
    ap.add_argument("--occupancy", default="1,2", help="programs per SM (comma list)")
    args = ap.parse_args()
    interp = os.environ.get("TRITON_INTERPRET") == "1"
    device = "cpu" if interp else "cuda"
    if interp:  # Triton 3.6's interpreter with numpy >= 2.3
        from tests.kernels.interpreter import patch

        patch()
    check(device)
    if args.check_only:
        return
    from triton.testing import do_bench

    def bench(fn):
        return do_bench(fn, warmup=10, rep=50, return_mode="median")

    sms = torch.cuda.get_device_properties(0).multi_processor_count
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, triton {triton.__version__}")
    gen = torch.Generator(device="cuda").manual_seed(0)
    n, bs = args.size, args.block
    for dens in (float(d) for d in args.densities.split(",")):
        w = block_sparse(n, bs, dens, "cuda", gen)
        x = torch.randn(n, n, device="cuda", generator=gen).to(torch.bfloat16)
        b = BSR.from_dense(w, (bs, bs))
        v, crow, col = b.values, b.row_ptr, b.col_indices
        ref = torch.nn.functional.linear(x, w).float()
        td = bench(lambda: torch.nn.functional.linear(x, w))
        tl_ = bench(lambda: bsr_triton.bsr_linear_triton(x, v, crow, col, None, n))
        print(f"\n{n}^3 block {bs} density {dens:.0%}: dense {td:.3f} ms; library "
              f"{tl_:.3f} ms ({td / tl_:.2f}x, {bsr_triton.best_config()})")  # fmt: skip
        best = None
        for block_m in ints(args.block_m):
            for w_left in (True, False):
                for warps in ints(args.warps):
                    for stages in ints(args.stages):
                        for occ in ints(args.occupancy):
                            cfg = (block_m, w_left, occ * sms, warps, stages)
                            try:
                                y = persistent(x, v, crow, col, n, *cfg)
                            except Exception as e:  # out of shared memory / registers
                                print(f"  {cfg}: {type(e).__name__}")
                                continue
                            err = ((y.float() - ref).norm() / ref.norm()).item()
                            if not err < 1e-2:
                                raise AssertionError(f"{cfg} wrong: {err:.2e}")
                            t = bench(lambda cfg=cfg: persistent(x, v, crow, col, n, *cfg))
                            if best is None or t < best[0]:
                                best = (t, cfg)
                            print(f"  BM {block_m} W_LEFT {w_left} w{warps} s{stages} "
                                  f"programs {occ}x{sms}: {t:.3f} ms ({td / t:.2f}x, "
                                  f"{tl_ / t:.2f}x the library)", flush=True)  # fmt: skip
        t, cfg = best
        print(f"best {cfg}: {t:.3f} ms, {td / t:.2f}x dense, {tl_ / t:.2f}x the library")


if __name__ == "__main__":
    main()
