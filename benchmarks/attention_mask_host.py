"""Host time of making a FlexAttention BlockMask from a window's kept block lists (CPU).

    PYTHONPATH=src python benchmarks/attention_mask_host.py     # a few seconds

A window's first call at a length returns its block lists as one flat int32 buffer, and the
flex backend makes the length's cached BlockMask from it (``layout.block_mask_from_flat``:
eight strided views). This times that against going through ``FlexBlocks.from_flat(...)
.to_block_mask(...)`` (narrow / view per list, then a (1, 1, ...) view of each), both with the
pattern's ``mask_mod``, for local(512) at block 128. Medians of 5 rounds of 2000 calls.
"""

from __future__ import annotations

import statistics
import time

from sparsetorch.attention import local
from sparsetorch.attention.backends.flex_band import band_flat_blocks
from sparsetorch.attention.layout import FlexBlocks, block_mask_from_flat

CALLS, ROUNDS = 2000, 5


def per_call_us(fn) -> float:
    rounds = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        for _ in range(CALLS):
            fn()
        rounds.append((time.perf_counter() - start) / CALLS * 1e6)
    return statistics.median(rounds)


def main() -> None:
    pattern, block = local(512), (128, 128)
    print("| n | strided views µs | through FlexBlocks µs |")
    print("|---:|---:|---:|")
    for n in (4096, 16384, 65536):
        flat = band_flat_blocks(n, block, -512, 512, None)

        def direct(n=n, flat=flat):
            return block_mask_from_flat(n, block, flat, pattern.mask_mod(n))

        def through(n=n, flat=flat):
            return FlexBlocks.from_flat(n, block, flat).to_block_mask(pattern.mask_mod(n))

        direct(), through()  # imports and first-call costs
        print(f"| {n} | {per_call_us(direct):.1f} | {per_call_us(through):.1f} |", flush=True)


if __name__ == "__main__":
    main()
