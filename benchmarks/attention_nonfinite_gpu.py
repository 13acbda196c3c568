"""What containing non-finite keys and values costs on a GPU when there are none: the band and
flex backends of ``sparse_attention`` with the cleaning as shipped (one Triton pass,
``kernels/finite_triton.py``), with the same cleaning in torch ops (``nonfinite.split_torch``),
and with no cleaning (``nonfinite.split`` replaced by one that returns k and v as they are);
all in one process on the same inputs, forward and forward + backward.

    PYTHONPATH=src python3 benchmarks/attention_nonfinite_gpu.py
    PYTHONPATH=src python3 benchmarks/attention_nonfinite_gpu.py --n 65536 --no-backward
    PYTHONPATH=src python3 benchmarks/attention_nonfinite_gpu.py --device cpu   # script check

Shapes: B=1, H=16, D=128, bfloat16, ``local(512)`` and ``causal() & local(512)``. Times are
medians of ``triton.testing.do_bench``; "x" columns are a form's time over the no-cleaning
time of the same backend (the cost of containment, 1.00x = free). The no-cleaning form still
marks no rows and, on the flex backend, still adds its (all-zero) score bias, so it is the
backend's kernel and glue without the cleaning itself. Each form's output is checked against
the shipped one first.
"""

from __future__ import annotations

import argparse
import time

import torch

from sparsetorch.attention import causal, local, sparse_attention
from sparsetorch.attention.backends import nonfinite


def ms(fn, device: str, budget_ms: float = 200.0) -> float:
    if device == "cpu":  # a check of the script, not a measurement: wall time of a few calls
        fn()
        start = time.perf_counter()
        for _ in range(3):
            fn()
        return (time.perf_counter() - start) / 3 * 1e3
    from triton.testing import do_bench

    return do_bench(fn, warmup=25, rep=budget_ms, return_mode="median")


def no_cleaning(k, v):
    """``nonfinite.split`` as if absent: inputs used as they are, nothing to mark."""
    return k, v, None


FORMS = {"shipped": None, "torch ops": nonfinite.split_torch, "none": no_cleaning}


def call(q, k, v, pattern, backend, form, grad):
    def run():
        shipped, replacement = nonfinite.split, FORMS[form]
        if replacement is not None:
            nonfinite.split = replacement
        try:
            out = sparse_attention(q, k, v, pattern, backend=backend)
            if grad is not None:
                out.backward(grad)
            return out
        finally:
            nonfinite.split = shipped

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, nargs="+", default=[4096, 16384, 65536])
    ap.add_argument("--backends", default="band,flex")
    ap.add_argument("--no-backward", action="store_true")
    ap.add_argument(
        "--device", choices=["cuda", "cpu"], default="cuda",
        help="cpu: check the script on tiny inputs (--n 256 --backends dense,reference)",
    )  # fmt: skip
    args = ap.parse_args()
    device = args.device
    if device == "cpu":
        args.n, args.backends = [min(n, 256) for n in args.n][:1], "dense,reference"
    name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    print(f"{name}, torch {torch.__version__}")
    print("| pattern | n | backend | pass | none ms | shipped ms (x) | torch ops ms (x) |")
    print("|---|---:|---|---|---:|---:|---:|")
    patterns = {"local(512)": local(512), "causal() & local(512)": causal() & local(512)}
    for label, pattern in patterns.items():
        for n in args.n:
            g = torch.Generator(device=device).manual_seed(n)
            dtype = torch.bfloat16 if device == "cuda" else torch.float32
            q, k, v = (
                torch.randn(1, 16, n, 128, device=device, dtype=dtype, generator=g)
                for _ in range(3)
            )
            passes = [("forward", None)]
            if not args.no_backward:
                grad = torch.randn_like(q)
                passes.append(("forward + backward", grad))
            for backend in args.backends.split(","):
                with torch.no_grad():
                    ref = call(q, k, v, pattern, backend, "shipped", None)().float()
                    for form in ("torch ops", "none"):
                        got = call(q, k, v, pattern, backend, form, None)().float()
                        if not (got - ref).abs().max() <= 1e-3:
                            raise AssertionError(f"{backend} {form} differs at n={n}")
                for name, grad in passes:
                    leaves = [t.detach().requires_grad_(grad is not None) for t in (q, k, v)]
                    t = {f: ms(call(*leaves, pattern, backend, f, grad), device) for f in FORMS}
                    base = t["none"]
                    print(
                        f"| `{label}` | {n} | {backend} | {name} | {base:.3f} "
                        f"| {t['shipped']:.3f} ({t['shipped'] / base:.2f}x) "
                        f"| {t['torch ops']:.3f} ({t['torch ops'] / base:.2f}x) |",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
