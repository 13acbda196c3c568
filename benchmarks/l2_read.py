"""How fast an SM can read from L2: the ceiling of the BSR kernel at low density.

The BSR forward reads x's (BLOCK_M x bs) tile once per stored block, so at 8192^3, block 64 it
moves nnzb * bs * M * 2 bytes from L2 into the SMs (859 MB at 5%, 1.7 GB at 10%), far more than
it reads from DRAM (x once, 128 MB). This probe reads a buffer that fits L2 over and over with
(rows x 64) tiles, the BSR kernel's own load shape, and reports bytes per second; the BSR table
in ``gpu.py`` reports the same rate for the kernel, so the two can be compared.

    PYTHONPATH=src python3 benchmarks/l2_read.py            # GPU
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from triton.testing import do_bench


@triton.jit
def _read_tiles(x_ptr, out_ptr, ROWS, REPEAT, TILE_M: tl.constexpr, BS: tl.constexpr):
    """Each program sums REPEAT (TILE_M, BS) tiles of x (ROWS, 8192): column blocks chosen by
    a stride so that neighbouring programs read different lines; one float out per program."""
    pid = tl.program_id(0)
    offs_m = tl.arange(0, TILE_M)
    offs_b = tl.arange(0, BS)
    acc = tl.zeros((TILE_M, BS), dtype=tl.float32)
    row0 = (pid % (ROWS // TILE_M)) * TILE_M
    for i in range(REPEAT):
        col = ((pid * 7 + i * 13) % (8192 // BS)) * BS
        ptrs = x_ptr + (row0 + offs_m)[:, None] * 8192 + (col + offs_b)[None, :]
        acc += tl.load(ptrs).to(tl.float32)
    tl.store(out_ptr + pid, tl.sum(acc))


def main() -> None:
    props = torch.cuda.get_device_properties(0)
    print(f"{props.name}, torch {torch.__version__}, triton {triton.__version__}")
    print("| buffer MB | tile | programs | GB read | ms | TB/s |")
    print("|---:|---|---:|---:|---:|---:|")
    for rows in (512, 1024, 2048, 8192):  # x (rows, 8192) bf16: 8, 16, 32 and 128 MB
        x = torch.randn(rows, 8192, device="cuda", dtype=torch.bfloat16)
        for tile_m in (128, 256):
            programs, repeat = props.multi_processor_count * 16, 64
            out = torch.empty(programs, device="cuda")
            fn = lambda: _read_tiles[(programs,)](x, out, rows, repeat, TILE_M=tile_m, BS=64)  # noqa: E731
            ms = do_bench(fn, warmup=10, rep=50, return_mode="median")
            gb = programs * repeat * tile_m * 64 * 2 / 1e9
            print(
                f"| {x.numel() * 2 / 2**20:.0f} | {tile_m} x 64 | {programs} | {gb:.2f} "
                f"| {ms:.3f} | {gb / ms:.2f} |"
            )


if __name__ == "__main__":
    main()
