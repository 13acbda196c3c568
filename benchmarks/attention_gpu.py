"""Sliding-window attention on one GPU: FlexAttention with our analytic block masks against
the fastest dense SDPA, and the cost of building the block mask against one attention call.
(The band kernel and every dense backend side by side: ``benchmarks/attention_band.py``.)

    python benchmarks/attention_gpu.py                 # the docs/benchmarks.md table (< 4 min)
    python benchmarks/attention_gpu.py --n 65536 --backward --budget 120

The shapes measured: ``local(512)`` (|i - j| <= 512), B=1, H=16, D=128, bfloat16, n = 4k / 16k /
64k. "best dense" is the fastest ``scaled_dot_product_attention`` over all keys (no mask) of
this run: torch's default dispatch (cuDNN attention on an H100) or one backend forced (cuDNN,
flash, memory-efficient); "dense flash", the flash backend forced, is an extra column (earlier
versions compared with it alone, which overstated every speed-up). "create_block_mask" is torch's own builder, which evaluates
the mask on every (query, key) pair; "our mask" is the library's cold build (cache cleared,
then ``flex.block_mask``): closed form for bands on the host (numpy; its time is shown apart),
one small host-to-device copy, one fill and one copy on the device. Then FlexAttention
(compiled once with dynamic shapes, as the library does) runs with several sparse block sizes
and kernel options, each compiled once; configurations that fail to compile or exceed the
time budget are reported, not hidden. The speed-up is best dense time / flex time; the goal
set for the library is >= 45x at 64k (the FLOP bound is n / (2w + 1) = 64x).

Times are CUDA-event medians of ``--repeats`` calls after warm-up. Correctness is checked once
per length: flex output against masked SDPA (max abs difference, bfloat16).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
import warnings

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.nn.attention.flex_attention import create_block_mask, flex_attention

from sparsetorch.attention import causal, global_tokens, local, sparse_attention, strided
from sparsetorch.attention.backends import flex as flex_backend
from sparsetorch.attention.bands import _band_runs
from sparsetorch.attention.pattern import cached_layout

# dense baselines, each timed; the fastest is the ratio's denominator
DENSE_BACKENDS = {
    "default": None,
    "cuDNN": [SDPBackend.CUDNN_ATTENTION],
    "flash": [SDPBackend.FLASH_ATTENTION],
    "efficient": [SDPBackend.EFFICIENT_ATTENTION],
}

# (name, BlockMask block size, FlexAttention kernel options)
CONFIGS = [
    ("default 128", 128, {}),
    ("128, rows safe", 128, {"ROWS_GUARANTEED_SAFE": True}),
    ("128, M128 N64 w8 s3", 128, {"BLOCK_M": 128, "BLOCK_N": 64, "num_warps": 8, "num_stages": 3}),
    (
        "128, M128 N128 w8 s2",
        128,
        {"BLOCK_M": 128, "BLOCK_N": 128, "num_warps": 8, "num_stages": 2},
    ),
    ("128, TMA", 128, {"USE_TMA": True}),
    ("(128, 64), M128 N64", (128, 64), {"BLOCK_M": 128, "BLOCK_N": 64}),
    ("64, M64 N64", 64, {"BLOCK_M": 64, "BLOCK_N": 64}),
    ("default 128, static shapes", 128, {"static": True}),  # compiled per n, for comparison
]


def cuda_ms(call, repeats: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        call()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def cold_build(pattern, n: int, device) -> None:
    """A host build at a new length (what a pattern other than a window gets on its first
    call): empty cache, then ``flex.block_mask`` (mask_mod, closed-form block lists, one
    host-to-device copy, the BlockMask)."""
    flex_backend.clear_block_masks()
    flex_backend.block_mask(pattern, n, device, 128)


def host_ms(call, repeats: int) -> float:
    """Wall time including a final synchronize (work done on the host and the device)."""
    call()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        t = time.perf_counter()
        call()
        torch.cuda.synchronize()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def step_ms(x, w, q, k, v, pattern, mode: str, repeats: int) -> float:
    """A model step's GPU time around the attention: a QKV-sized projection, then the library's
    attention, CUDA events around both. "warm": the length's mask is cached. "first": the
    cache is cleared first, so the step is a first call at a new length (for a window, the
    block lists are built in the compiled call). "host": cleared, then the mask built on the
    host while the projection runs (what other patterns get, and windows before). What a
    cold step adds over a warm one is the build's cost on the GPU's timeline."""
    times = []
    for i in range(repeats + 3):
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        x @ w
        if mode != "warm":
            flex_backend.clear_block_masks()
        if mode == "host":
            flex_backend.block_mask(pattern, q.shape[2], q.device, 128)
        sparse_attention(q, k, v, pattern, backend="flex")
        end.record()
        torch.cuda.synchronize()
        if i >= 3:
            times.append(start.elapsed_time(end))
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, nargs="+", default=[4096, 16384, 65536])
    parser.add_argument("--window", type=int, default=512)
    parser.add_argument("--heads", type=int, default=16)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--backward", action="store_true", help="also time forward + backward")
    parser.add_argument("--budget", type=float, default=200.0, help="seconds for flex configs")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    assert torch.cuda.is_available(), "needs a CUDA GPU"
    for limit in ("recompile_limit", "cache_size_limit", "accumulated_recompile_limit"):
        if hasattr(torch._dynamo.config, limit):  # one compile per kernel configuration
            setattr(torch._dynamo.config, limit, max(64, getattr(torch._dynamo.config, limit)))
    began = time.perf_counter()
    device = torch.device("cuda")
    pattern = local(args.window)
    compiled = flex_backend.compiled_flex_attention("cuda")  # the library's compiled kernel
    static = torch.compile(flex_attention, dynamic=False)
    print(
        f"{torch.cuda.get_device_name()}, torch {torch.__version__}, B=1 H={args.heads} "
        f"D={args.dim} bfloat16, pattern {pattern!r}\n"
    )
    results: dict[tuple[str, int], float] = {}
    rows = []
    for n in args.n:
        g = torch.Generator(device="cuda").manual_seed(0)
        q, k, v = (
            torch.randn(
                1, args.heads, n, args.dim, device=device, dtype=torch.bfloat16, generator=g
            )
            for _ in range(3)
        )
        dense_all = {}
        for label, backends in DENSE_BACKENDS.items():
            try:
                with sdpa_kernel(backends) if backends else contextlib.nullcontext():
                    dense_all[label] = cuda_ms(
                        lambda q=q, k=k, v=v: F.scaled_dot_product_attention(q, k, v), 10
                    )
            except RuntimeError:  # a backend refusing this shape
                pass
        dense = min(dense_all.values())
        mask_mod = pattern.mask_mod(n, device)
        theirs = host_ms(
            lambda n=n, mm=mask_mod: create_block_mask(mm, None, None, n, n, device=device), 3
        )
        ours = host_ms(lambda n=n: cold_build(pattern, n, device), args.repeats)
        lo, hi = -args.window, args.window
        host = host_ms(lambda n=n: _band_runs(n, 128, 128, lo, hi), args.repeats)
        row = {"n": n, "dense": dense, "create_block_mask": theirs, "ours": ours, "configs": {}}
        row["dense_all"] = dense_all
        d_model = args.heads * args.dim
        x = torch.randn(n, d_model, device=device, dtype=torch.bfloat16)
        w = torch.randn(d_model, 3 * d_model, device=device, dtype=torch.bfloat16)
        for mode in ("warm", "first", "host"):
            row[f"step_{mode}"] = step_ms(x, w, q, k, v, pattern, mode, args.repeats)
        del x, w
        row["host"] = host
        # correctness once: flex (our mask) against masked SDPA
        bm = flex_backend.block_mask(pattern, n, device, 128)
        out = compiled(q, k, v, block_mask=bm)
        if n <= 16384:
            ref = F.scaled_dot_product_attention(q, k, v, attn_mask=pattern.mask(n, device))
            row["max_abs_diff"] = float((out.float() - ref.float()).abs().max())
        del out
        # the plain FlexAttention baseline: torch's create_block_mask, default kernel
        tbm = create_block_mask(mask_mod, None, None, n, n, device=device)
        row["flex_theirs"] = cuda_ms(
            lambda tbm=tbm: compiled(q, k, v, block_mask=tbm), args.repeats
        )
        # the library end to end (cached mask, dispatch, compiled kernel)
        row["library"] = cuda_ms(
            lambda: sparse_attention(q, k, v, pattern, backend="flex"), args.repeats
        )
        for name, block, options in CONFIGS:
            if time.perf_counter() - began > args.budget:
                row["configs"][name] = "skipped (time budget)"
                continue
            try:
                bm = flex_backend.block_mask(pattern, n, device, block)
                fn = static if options.get("static") else compiled
                options = {key: val for key, val in options.items() if key != "static"}
                ms = cuda_ms(
                    lambda bm=bm, o=options, fn=fn: fn(q, k, v, block_mask=bm, kernel_options=o),
                    args.repeats,
                )
                row["configs"][name] = ms
                results[(name, n)] = ms
            except Exception as exc:  # report, keep going
                row["configs"][name] = f"failed: {type(exc).__name__}: {str(exc)[:80]}"
        if args.backward:
            row["backward"] = backward_times(q, k, v, pattern, n, compiled, args.repeats)
        row["others"] = other_builds(q, k, v, args.window, args.repeats)
        rows.append(row)
        print(f"n={n} done ({time.perf_counter() - began:.0f} s)", flush=True)
    report(rows, args)
    print(f"\n({time.perf_counter() - began:.0f} s)")


def device_build(pattern, n: int, device) -> None:
    """The whole build on the device (layout, ordered lists, BlockMask), for comparison."""
    layout = pattern.block_layout(n, 128, device)
    layout.flex_blocks().to_block_mask(pattern.mask_mod(n, device))


def other_builds(q, k, v, window: int, repeats: int) -> dict[str, tuple[float, ...]]:
    """Patterns that are not windows build their mask from their block layout (on the CPU
    for grids up to HOST_BUILD_MAX_BLOCKS, else on the device): {pattern: (cold build ms,
    build ms with the CPU layout already cached as ``auto`` leaves it, build ms with every
    step on the device, library call ms)}."""
    n, device = q.shape[2], q.device

    def cold(pattern):
        cached_layout.cache_clear()
        cold_build(pattern, n, device)

    out = {}
    for pattern in (local(window) | global_tokens([0]), causal() & (local(window) | strided(256))):
        build = host_ms(lambda p=pattern: cold(p), repeats)
        warm = host_ms(lambda p=pattern: cold_build(p, n, device), repeats)
        on_device = host_ms(lambda p=pattern: device_build(p, n, device), repeats)
        call = cuda_ms(lambda p=pattern: sparse_attention(q, k, v, p, backend="flex"), repeats)
        out[repr(pattern)] = (build, warm, on_device, call)
    return out


def backward_times(q, k, v, pattern, n, compiled, repeats) -> dict[str, float]:
    qq, kk, vv = (t.detach().requires_grad_() for t in (q, k, v))
    grad = torch.randn_like(q)

    def flash():  # torch's default dispatch (cuDNN on an H100)
        F.scaled_dot_product_attention(qq, kk, vv).backward(grad)

    bm = flex_backend.block_mask(pattern, n, q.device, 128)

    def flex():
        compiled(qq, kk, vv, block_mask=bm).backward(grad)

    return {"dense": cuda_ms(flash, repeats), "flex": cuda_ms(flex, repeats)}


def report(rows, args) -> None:
    print(f"\n### Forward, local({args.window}), B1 H{args.heads} D{args.dim} bf16\n")
    print(
        "| n | best dense ms | dense flash ms | flex + create_block_mask ms (x) | "
        "library flex ms (x) | best flex ms (x) | best config | max abs diff |"
    )
    print("|---:|---:|---:|---:|---:|---:|---|---:|")
    for r in rows:
        timed = {k: v for k, v in r["configs"].items() if isinstance(v, float)}
        best = min(timed, key=timed.get) if timed else None
        d = r["dense"]
        best_txt = f"{timed[best]:.3f} ({d / timed[best]:.1f}x)" if best else "-"
        diff = f"{r['max_abs_diff']:.3g}" if "max_abs_diff" in r else "-"
        flash = r["dense_all"].get("flash", float("nan"))
        print(
            f"| {r['n']} | {d:.3f} | {flash:.3f} | {r['flex_theirs']:.3f} ({d / r['flex_theirs']:.1f}x) | "
            f"{r['library']:.3f} ({d / r['library']:.1f}x) | {best_txt} | {best or '-'} | {diff} |"
        )
    last = rows[-1]
    timed = [v for v in last["configs"].values() if isinstance(v, float)]
    if timed:
        best = last["dense"] / min(timed)
        verdict = "met" if best >= 45 else "not met"
        print(f"\nGoal >= 45x at n={last['n']}: best {best:.1f}x, {verdict}.")
    print("\n### Building the block mask vs one attention call\n")
    print(
        "| n | create_block_mask ms | host build ms | of which closed form ms | "
        "host build / library call | step warm ms | step first call ms | step host build ms | "
        "first - warm / library call | host - warm / library call |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        first, host = (r[f"step_{m}"] - r["step_warm"] for m in ("first", "host"))
        print(
            f"| {r['n']} | {r['create_block_mask']:.3f} | {r['ours']:.3f} | {r['host']:.3f} | "
            f"{r['ours'] / r['library']:.1%} | {r['step_warm']:.3f} | {r['step_first']:.3f} | "
            f"{r['step_host']:.3f} | {first / r['library']:.1%} | {host / r['library']:.1%} |"
        )
    print(
        "\nStep: a (n x H*D) @ (H*D x 3*H*D) projection, then the library's attention, CUDA "
        "events around both. first: the mask cache cleared (a first call at a new length: a "
        "window builds its lists in the compiled call); host: cleared, then built on the host."
    )
    print("\n### Other patterns: the host build from the block layout vs one call\n")
    print(
        "| n | pattern | build ms | build, layout cached ms | all on the device ms | "
        "library call ms | build / call | cached layout build / call |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        for name, (build, warm, on_device, call) in r["others"].items():
            print(
                f"| {r['n']} | `{name}` | {build:.3f} | {warm:.3f} | {on_device:.3f} | "
                f"{call:.3f} | {build / call:.1%} | {warm / call:.1%} |"
            )
    print("\n### Every flex configuration (ms, speed-up over the best dense)\n")
    names = [name for name, _, _ in CONFIGS]
    print("| config | " + " | ".join(f"n={r['n']}" for r in rows) + " |")
    print("|---|" + "---:|" * len(rows))
    for name in names:
        cells = []
        for r in rows:
            v = r["configs"].get(name, "-")
            cells.append(f"{v:.3f} ({r['dense'] / v:.1f}x)" if isinstance(v, float) else str(v))
        print(f"| {name} | " + " | ".join(cells) + " |")
    if args.backward:
        print("\n### Forward + backward (default config)\n")
        print("| n | dense (default SDPA) ms | flex ms | speed-up |")
        print("|---:|---:|---:|---:|")
        for r in rows:
            b = r["backward"]
            print(
                f"| {r['n']} | {b['dense']:.3f} | {b['flex']:.3f} | {b['dense'] / b['flex']:.1f}x |"
            )


if __name__ == "__main__":
    main()
