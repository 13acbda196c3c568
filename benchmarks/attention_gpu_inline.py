"""Windows on CUDA: what a first call at a new length costs over a call with the cached mask.

    PYTHONPATH=src python3 benchmarks/attention_gpu_inline.py     # GPU machine, ~1 minute

local(512), B1 H16 D128 bf16, through the library (``sparse_attention(..., backend="flex")``).
"warm": the length's BlockMask is cached. "first": the cache is cleared before every call, so
each call is a first call at its length: the window's block lists are built inside the
compiled call (``backends/flex_band.py``, one extra kernel) and kept as the cached mask.
"host": cleared, then the mask built on the host before the call (closed form, one copy; what
windows did before and other patterns do).

Three clocks, medians over rounds in which the variants alternate:
- GPU ms per call: 50 calls queued behind ~0.1 s of GPU sleep, CUDA events around them, so
  the host's launch cost is hidden and only the GPU's work counts;
- host µs per call: the host's time for the same 50 calls (the GPU asleep, so nothing waits);
- single-call ms: CUDA events around one call from an idle GPU (host and GPU in series).
"""

from __future__ import annotations

import statistics
import time
import warnings

import torch

from attention_gpu import cuda_ms  # median of single calls, CUDA events from an idle GPU
from sparsetorch.attention import local, sparse_attention
from sparsetorch.attention.backends import flex

CALLS, ROUNDS = 50, 5


def queued(fn) -> tuple[float, float]:
    """(GPU ms per call, host µs per call) of CALLS calls queued behind a GPU sleep."""
    torch.cuda.synchronize()
    torch.cuda._sleep(200_000_000)  # ~0.1 s: the host runs ahead
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    t = time.perf_counter()
    for _ in range(CALLS):
        fn()
    host = (time.perf_counter() - t) / CALLS * 1e6
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / CALLS, host


def main() -> None:
    warnings.filterwarnings("ignore")
    pattern, dev = local(512), torch.device("cuda")
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}\n")
    print(
        "| n | variant | GPU ms / call | host µs / call | single call ms | "
        "GPU over warm | single call over warm |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|")
    for n in (4096, 16384, 65536):
        q, k, v = (torch.randn(1, 16, n, 128, device=dev, dtype=torch.bfloat16) for _ in range(3))

        def warm():
            return sparse_attention(q, k, v, pattern, backend="flex")

        def first():
            flex.clear_block_masks()
            return warm()

        def host():
            flex.clear_block_masks()
            flex.block_mask(pattern, n, dev, 128)
            return warm()

        variants = {"warm": warm, "first": first, "host": host}
        for fn in variants.values():  # compile and warm up every path
            for _ in range(3):
                fn()
        got = {name: {"gpu": [], "host": [], "single": []} for name in variants}
        for _ in range(ROUNDS):
            for name, fn in variants.items():
                gpu, host_us = queued(fn)
                got[name]["gpu"].append(gpu)
                got[name]["host"].append(host_us)
                got[name]["single"].append(cuda_ms(fn, 10, warmup=0))
        med = {
            name: {clock: statistics.median(v) for clock, v in clocks.items()}
            for name, clocks in got.items()
        }
        w = med["warm"]
        for name, m in med.items():
            print(
                f"| {n} | {name} | {m['gpu']:.4f} | {m['host']:.1f} | {m['single']:.4f} | "
                f"{m['gpu'] / w['gpu'] - 1:+.1%} | {m['single'] / w['single'] - 1:+.1%} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
