"""Windows on CUDA: the block mask built inside the compiled call (``backends/flex_band.py``)
against the host-built, cached BlockMask — warm calls and first calls, in one process.

    PYTHONPATH=src python3 benchmarks/attention_gpu_inline.py     # GPU machine, ~1 minute

local(512), B1 H16 D128 bf16. "cached": FlexAttention compiled once with dynamic shapes, fed
the library's cached host-built BlockMask (what ``backend="flex"`` runs for other patterns);
"inline": the compiled call that builds the band's block lists itself. Warm: CUDA-event
median of single calls after warm-up, the two alternating. Cold: a first call at a length
(cache cleared for "cached"; nothing to clear for "inline"), host wall time with a sync.
"""

from __future__ import annotations

import statistics
import warnings

import torch

from attention_gpu import host_ms  # wall time with a synchronize, median of repeats
from sparsetorch.attention import local
from sparsetorch.attention.backends import flex
from sparsetorch.attention.backends.flex_band import compiled_band_attention


def event_ms(fn) -> float:
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    start.record()
    fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end)


def main() -> None:
    warnings.filterwarnings("ignore")
    pattern, scale = local(512), 128**-0.5
    dev = torch.device("cuda")
    compiled = flex.compiled_flex_attention("cuda")
    inline = compiled_band_attention()
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}\n")
    print(
        "| n | cached warm ms | inline warm ms | inline / cached | cached cold ms | inline cold ms |"
    )
    print("|---:|---:|---:|---:|---:|---:|")
    for n in (4096, 16384, 65536):
        q, k, v = (torch.randn(1, 16, n, 128, device=dev, dtype=torch.bfloat16) for _ in range(3))

        def cached():
            return compiled(q, k, v, block_mask=flex.block_mask(pattern, n, dev, 128), scale=scale)

        def inlined():
            return inline(q, k, v, -512, 512, (128, 128), scale, None)

        assert (cached().float() - inlined().float()).abs().max().item() < 1e-2
        for _ in range(5):
            cached(), inlined()
        warm = {"cached": [], "inline": []}
        for _ in range(30):
            warm["cached"].append(event_ms(cached))
            warm["inline"].append(event_ms(inlined))
        c, i = (statistics.median(warm[key]) for key in ("cached", "inline"))

        def cold_cached():
            flex.block_mask.cache_clear()
            cached()

        cold_c, cold_i = host_ms(cold_cached, 20), host_ms(inlined, 20)
        print(
            f"| {n} | {c:.3f} | {i:.3f} | {i / c:.2f}x | {cold_c:.3f} | {cold_i:.3f} |", flush=True
        )


if __name__ == "__main__":
    main()
