"""FlexAttention gradients on CUDA against masked dense attention, for patterns whose mask
function reads a lookup table (global_tokens, random, block) and a band as control.

    python benchmarks/attention_gpu_grad.py                     # ~1-2 min on an H100
    python benchmarks/attention_gpu_grad.py --n 1000 --dtypes float32

For every pattern and length (float32; bfloat16 for three of the patterns), the compiled
FlexAttention forward + backward (as the library compiles it: dynamic shapes) runs with three
block masks:

- ``ours``: the library's analytic ``BlockMask`` (``flex.block_mask``);
- ``torch``: ``create_block_mask`` of the same mask_mod (evaluates every pair);
- ``ours, q side column-major``: ours with each query-side index row replaced by what the
  Triton backward reads when that side is stored column-major (it steps along a row by +1),
  as the library stored it before the fix for every pattern but bands. Expected to give wrong
  dK/dV wherever that read differs (here: every pattern, the band too, whose closed-form
  lists were row-major even then); printed to confirm the diagnosis, not counted.

Each output and gradient is compared with masked softmax attention in float64 on the same
(rounded) inputs; the max abs error is printed per gradient, and checked relative to the
largest reference value of that tensor: <= 1e-4 (float32), <= 2e-2 (bfloat16). Exit code 1
when ``ours`` or ``torch`` fails it.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings

import torch
from torch.nn.attention.flex_attention import create_block_mask

import sparsetorch.attention as A
from sparsetorch.attention.backends import flex

ATTENTION_PATTERNS = {
    "local(64) (band, control)": A.local(64),
    "global_tokens([0, 700])": A.global_tokens([0, 700]),
    "local(32) | global_tokens([0, 257])": A.local(32) | A.global_tokens([0, 257]),
    "random(3, seed=1)": A.random(3, seed=1),
    "random(2, seed=3, block=64) & ~causal()": A.random(2, seed=3, block=64) & ~A.causal(),
    "block(128, 32x32 cells)": A.block(
        128, torch.rand(32, 32, generator=torch.Generator().manual_seed(0)) > 0.7
    ),
    "causal() & (local(64) | global_tokens([3]) | random(1))": A.causal()
    & (A.local(64) | A.global_tokens([3]) | A.random(1, seed=2)),
}
BF16_PATTERNS = (
    "local(64) (band, control)",
    "local(32) | global_tokens([0, 257])",
    "causal() & (local(64) | global_tokens([3]) | random(1))",
)
TOLERANCE = {torch.float32: 1e-4, torch.bfloat16: 2e-2}  # relative to max |reference|


def masked_attention_fp64(q, k, v, mask, scale):
    """softmax(q kᵀ · scale, masked) v in float64; rows without keys give zeros."""
    q, k, v = (t.double() for t in (q, k, v))
    has_key = mask.any(-1, keepdim=True)  # (n, 1)
    s = (q @ k.transpose(-1, -2)) * scale
    s = s.masked_fill(~mask & has_key, float("-inf"))
    return (torch.softmax(s, -1) * has_key) @ v


def as_the_kernel_read_column_major(mask):
    """``mask`` with each query-side index row replaced by what FlexAttention's backward read
    when that side was stored column-major (the old bug): row r from ``r * stride(-2)`` on, at
    unit steps. Kept row-major, so it reuses the compiled kernel (no stride recompile)."""

    def misread(idx):  # (1, 1, nkb, nqb)
        col = idx[0, 0].T.contiguous().T  # column-major storage, same values
        read = torch.as_strided(col, col.shape, (col.stride(0), 1))
        return read.contiguous()[None, None]

    return type(mask)(
        seq_lengths=mask.seq_lengths,
        kv_num_blocks=mask.kv_num_blocks,
        kv_indices=mask.kv_indices,
        full_kv_num_blocks=mask.full_kv_num_blocks,
        full_kv_indices=mask.full_kv_indices,
        q_num_blocks=mask.q_num_blocks,
        q_indices=misread(mask.q_indices),
        full_q_num_blocks=mask.full_q_num_blocks,
        full_q_indices=misread(mask.full_q_indices),
        BLOCK_SIZE=mask.BLOCK_SIZE,
        mask_mod=mask.mask_mod,
    )


def errors(compiled, q, k, v, mask, scale, upstream, want) -> list[float]:
    """Max abs error of (out, dq, dk, dv) against the float64 reference ``want``."""
    qq, kk, vv = (t.detach().requires_grad_() for t in (q, k, v))
    out = compiled(qq, kk, vv, block_mask=mask, scale=scale)
    got = (out, *torch.autograd.grad(out, (qq, kk, vv), upstream))
    return [float((a.double() - b).abs().max()) for a, b in zip(got, want)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, nargs="+", default=[1000, 1024, 4096])
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    parser.add_argument("--heads", type=int, default=2)
    parser.add_argument("--dim", type=int, default=64)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    assert torch.cuda.is_available(), "needs a CUDA GPU"
    for limit in ("recompile_limit", "cache_size_limit", "accumulated_recompile_limit"):
        if hasattr(torch._dynamo.config, limit):  # one compile per pattern structure and dtype
            setattr(torch._dynamo.config, limit, max(256, getattr(torch._dynamo.config, limit)))
    began = time.perf_counter()
    device = torch.device("cuda")
    compiled = flex.compiled_flex_attention("cuda")
    scale = args.dim**-0.5
    print(
        f"{torch.cuda.get_device_name()}, torch {torch.__version__}, B1 H{args.heads} D{args.dim}"
    )
    print("max abs error vs float64 masked attention: out / dq / dk / dv\n")
    print("| pattern | n | dtype | mask | out | dq | dk | dv | ok |")
    print("|---|---:|---|---|---:|---:|---:|---:|---|")
    failed = []
    for dtype_name in args.dtypes:
        dtype = getattr(torch, dtype_name)
        tol = TOLERANCE[dtype]
        for name, pattern in ATTENTION_PATTERNS.items():
            if dtype == torch.bfloat16 and name not in BF16_PATTERNS:
                continue  # each (pattern, dtype) compiles once; bf16 on a subset
            for n in args.n:
                g = torch.Generator(device=device).manual_seed(n)
                shape = (1, args.heads, n, args.dim)
                q, k, v = (torch.randn(shape, device=device, generator=g).to(dtype) for _ in "qkv")
                upstream = torch.randn(shape, device=device, generator=g).to(dtype)
                qd, kd, vd = (t.double().requires_grad_() for t in (q, k, v))
                ref = masked_attention_fp64(qd, kd, vd, pattern.mask(n, device), scale)
                want = (ref, *torch.autograd.grad(ref, (qd, kd, vd), upstream.double()))
                ours = flex.block_mask(pattern, n, device)
                masks = {  # one mask_mod object: one compile per pattern and dtype
                    "ours": ours,
                    "torch": create_block_mask(ours.mask_mod, 1, 1, n, n, device=device),
                    "ours, q side column-major": as_the_kernel_read_column_major(ours),
                }
                for label, mask in masks.items():
                    err = errors(compiled, q, k, v, mask, scale, upstream, want)
                    ok = all(e <= tol * float(w.abs().max()) for e, w in zip(err, want))
                    counted = label != "ours, q side column-major"
                    if counted and not ok:
                        failed.append((name, n, dtype_name, label))
                    verdict = ("yes" if ok else "NO") + ("" if counted else " (old bug)")
                    cells = " | ".join(f"{e:.2e}" for e in err)
                    print(f"| {name} | {n} | {dtype_name} | {label} | {cells} | {verdict} |")
                sys.stdout.flush()
    print(f"\n({time.perf_counter() - began:.0f} s)")
    if failed:
        print(f"MISMATCH in {len(failed)} cases: {failed}")
        return 1
    print("all gradients match (ours and torch's block masks)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
