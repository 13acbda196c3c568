"""The band kernel's forward tiles, swept: every (BLOCK_M, BLOCK_N, warps, stages) timed on the
goal shapes against the fastest dense SDPA of the same run, so that the autotuner's config list
(kernels/band_attention.py, ``_FWD``) holds the tiles that win on the card.

    PYTHONPATH=src python3 benchmarks/band_tiles.py                  # n = 65536, local(512)
    PYTHONPATH=src python3 benchmarks/band_tiles.py --n 16384 --window 256

Shapes: B=1, H=16, D=128, bfloat16; ``local(w)`` (band(-w, w)) and its causal form band(0, w).
Each config runs the kernel's three loops (edge tiles masked, interior unmasked), its
one-loop form (``ONE_LOOP``: one software pipeline, the mask evaluated on edge tiles by a
branch), the one-loop form reading k and v through tensor descriptors (``TMA``, Hopper's
tensor-memory accelerator), and either with half the exponentials on the FMA units
(``POLY``); ``--forms`` picks among them. Each config's output is checked against the
autotuned kernel's (max abs difference). Times are medians of ``triton.testing.do_bench``; the
dense baseline is the fastest of torch's default SDPA and each forced backend (no mask;
``is_causal`` for the causal rows).
"""

from __future__ import annotations

import argparse
import itertools

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from sparsetorch.kernels import band_attention as band

BACKENDS = [
    None,
    SDPBackend.CUDNN_ATTENTION,
    SDPBackend.FLASH_ATTENTION,
    SDPBackend.EFFICIENT_ATTENTION,
]


def ms(fn) -> float:
    from triton.testing import do_bench

    return do_bench(fn, warmup=25, rep=100, return_mode="median")


def best_dense(q, k, v, is_causal: bool) -> tuple[str, float]:
    times = {}
    for backend in BACKENDS:
        name = "default" if backend is None else backend.name.lower()

        def run(backend=backend):
            if backend is None:
                return F.scaled_dot_product_attention(q, k, v, is_causal=is_causal)
            with sdpa_kernel([backend]):
                return F.scaled_dot_product_attention(q, k, v, is_causal=is_causal)

        try:
            times[name] = ms(run)
        except RuntimeError:
            continue
    name = min(times, key=times.get)
    return name, times[name]


FORMS = {
    "loops": {"ONE_LOOP": False},
    "one": {"ONE_LOOP": True},
    "tma": {"ONE_LOOP": True, "TMA": True},
    "poly": {"ONE_LOOP": True, "POLY": True},
    "tma-poly": {"ONE_LOOP": True, "TMA": True, "POLY": True},
}


def run_config(q, k, v, lo, hi, bm, bn, warps, stages, form):
    b, h, n, d = q.shape
    out = torch.empty_like(q)
    lse = torch.empty(b, h, n, dtype=torch.float32, device=q.device)
    scale = d**-0.5

    def call():
        band._band_fwd_k[(band.triton.cdiv(n, bm), b * h)](
            q, k, v, out, lse, lse,  # (BAD: unused without containment)
            *q.stride()[:3], *k.stride()[:3], *v.stride()[:3], *out.stride()[:3],
            h, 1, n, lo, hi, scale * band.LOG2E, hi - lo, n,
            HEAD_DIM=d, BLOCK_M=bm, BLOCK_N=bn, **FORMS[form], num_warps=warps,
            num_stages=stages,
        )  # fmt: skip
        return out

    return call


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=65536)
    ap.add_argument("--window", type=int, default=512)
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--autotuned-only", action="store_true", help="time the autotuned kernel only")
    ap.add_argument("--forms", default="loops,one,tma", help="comma list of " + ", ".join(FORMS))
    ap.add_argument("--block-n", default="64,128", help="comma list of BLOCK_N to sweep")
    ap.add_argument("--stages", default="2,3,4", help="comma list of pipeline stages to sweep")
    args = ap.parse_args()
    forms = args.forms.split(",")
    block_n = tuple(int(b) for b in args.block_n.split(","))
    stage_list = tuple(int(b) for b in args.stages.split(","))
    # descriptors made on the device need a scratch allocation per launch
    band.triton.set_allocator(
        lambda size, align, stream: torch.empty(size, device="cuda", dtype=torch.int8)
    )
    n, w = args.n, args.window
    g = torch.Generator(device="cuda").manual_seed(0)
    q, k, v = (
        torch.randn(1, args.heads, n, args.dim, device="cuda", dtype=torch.bfloat16, generator=g)
        for _ in range(3)
    )
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, n={n}, window {w}")
    configs = [
        (bm, bn, warps, stages, form)
        for bm, bn, warps, stages, form in itertools.product(
            (64, 128), block_n, (4, 8), stage_list, forms
        )
        if warps == 4 or bm * bn >= 128 * 64
    ]
    for causal_form, (lo, hi) in ((False, (-w, w)), (True, (0, w))):
        name, dense = best_dense(q, k, v, causal_form)
        ref = band.band_forward(q, k, v, lo, hi, args.dim**-0.5)[0]
        auto = ms(lambda: band.band_forward(q, k, v, lo, hi, args.dim**-0.5))
        pairs = (hi - lo + 1) * n - (hi * (hi + 1) // 2) - (-lo * (-lo + 1) // 2)
        flop = 4 * pairs * args.dim * args.heads
        print(
            f"\nband({lo}, {hi}): best dense {name} {dense:.3f} ms; autotuned "
            f"{band._fwd_tuned.best_config} {auto:.3f} ms ({dense / auto:.1f}x, "
            f"{flop / auto / 1e9:.0f} TFLOP/s)"
        )
        results = []
        for bm, bn, warps, stages, form in [] if args.autotuned_only else configs:
            try:
                call = run_config(q, k, v, lo, hi, bm, bn, warps, stages, form)
                err = float((call().float() - ref.float()).abs().max())
                t = ms(call)
            except Exception as exc:  # out of shared memory, registers
                print(f"  {bm:>3} {bn:>3} w{warps} s{stages} {form}: {exc!r:.80}")
                continue
            results.append((t, bm, bn, warps, stages, form, err))
        for t, bm, bn, warps, stages, form, err in sorted(results)[:14]:
            print(
                f"  {bm:>3} {bn:>3} w{warps} s{stages} {form:>8}: "
                f"{t:.3f} ms {dense / t:5.1f}x "
                f"{flop / t / 1e9:4.0f} TFLOP/s (max diff {err:.2g})"
            )


if __name__ == "__main__":
    main()
