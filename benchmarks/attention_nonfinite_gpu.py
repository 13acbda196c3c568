"""What containing non-finite keys and values costs on a GPU when there are none: the band and
flex backends of ``sparse_attention`` with the containment as shipped (band: the kernel's own,
``band_attention(..., contain=True)``, which marks the bad positions as it goes and recomputes
the tiles that see one in a second pass; flex: the cleaning of k and v,
``kernels/finite_triton.py``, and its score bias), flex's containment in torch ops
(``nonfinite.split_torch``, ``masked_fill``), and with no containment (the band kernel without
``contain``, ``nonfinite.split`` returning k and v as they are); all in one process on the same
inputs, forward and forward + backward.

    PYTHONPATH=src python3 benchmarks/attention_nonfinite_gpu.py
    PYTHONPATH=src python3 benchmarks/attention_nonfinite_gpu.py --n 65536 --no-backward
    PYTHONPATH=src python3 benchmarks/attention_nonfinite_gpu.py --pieces 65536
    PYTHONPATH=src python3 benchmarks/attention_nonfinite_gpu.py --device cpu   # script check
    TRITON_INTERPRET=1 PYTHONPATH=src:. python3 benchmarks/attention_nonfinite_gpu.py \
        --device cpu --pieces 256                                               # script check

Shapes: B=1, H=16, D=128, bfloat16, ``local(512)`` and ``causal() & local(512)``. Times are
medians of ``triton.testing.do_bench``; "x" columns are a form's time over the no-cleaning
time of the same backend (the cost of containment, 1.00x = free). The no-cleaning form still
adds, on the flex backend, its (all-zero) score bias, so it is the backend's kernel and glue
without the containment's passes. Each form's output is checked against the shipped one
first. ``--pieces N`` instead times each piece of the band backend's containment at length N
(GPU time per call from CUDA events around 50 calls, no cache flush between them).
"""

from __future__ import annotations

import argparse
import time

import torch

from gpu_e2e import sample  # this script's folder is on the path when run as a script
from sparsetorch.attention import causal, local, sparse_attention
from sparsetorch.attention.backends import nonfinite
from sparsetorch.kernels import band_attention as band_kernel
from sparsetorch.kernels.interpret import interpreting

BAND = band_kernel.band_attention  # the kernel's entry point, before any form replaces it


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


def masked_poison(out, rows):
    """``nonfinite.poison`` in torch ops (``masked_fill``)."""
    return out if rows is None else out.masked_fill(rows[..., None], float("nan"))


def band_uncontained(q, k, v, lo, hi, scale=None, **_):
    return BAND(q, k, v, lo, hi, scale)


# each form: the (module, name, replacement) it puts in place for the call; a form that does
# not touch a backend's path times the shipped one again
FORMS = {
    "shipped": [],
    "torch ops": [
        (nonfinite, "split", nonfinite.split_torch),
        (nonfinite, "poison", masked_poison),
    ],
    "none": [(band_kernel, "band_attention", band_uncontained), (nonfinite, "split", no_cleaning)],
}


def call(q, k, v, pattern, backend, form, grad):
    def run():
        shipped = [(module, name, getattr(module, name)) for module, name, _ in FORMS[form]]
        for module, name, replacement in FORMS[form]:
            setattr(module, name, replacement)
        try:
            out = sparse_attention(q, k, v, pattern, backend=backend)
            if grad is not None:
                out.backward(grad)
            return out
        finally:
            for module, name, original in shipped:
                setattr(module, name, original)

    return run


def per_call_ms(fn, device: str = "cuda", reps: int = 50) -> float:
    """GPU time per call: CUDA events around ``reps`` calls after one warm-up call (on the
    CPU, a check of the script: wall time of a few calls)."""
    if device == "cpu":
        return ms(fn, device)
    fn()
    return sample(fn, torch.device(device), reps) * 1e3


def pieces(n: int, device: str = "cuda") -> None:
    """The band backend's containment piece by piece at one length (``local(512)``); on the
    CPU (Triton's interpreter, a check of the script) in float16."""
    from sparsetorch.kernels import finite_triton

    dtype = torch.bfloat16 if device == "cuda" else torch.float16
    q, k, v = (torch.randn(1, 16, n, 128, device=device, dtype=dtype) for _ in range(3))
    out = torch.randn_like(q)
    rows = torch.zeros(1, 16, n, dtype=torch.bool, device=device)
    k_nan = k.clone()
    k_nan[..., n // 2, 0] = float("nan")  # one bad position per head, mid-sequence
    rows_of = {
        "the cleaning kernel (k and v)": lambda: finite_triton.clean_nonfinite_triton(k, v),
        "two clones of k and v (the same bytes)": lambda: (k.clone(), v.clone()),
        "the cleaning in torch ops": lambda: nonfinite.split_torch(k, v),
        "the NaN fill by masked_fill": lambda: masked_poison(out, rows),
        "the NaN fill by fill_rows": lambda: finite_triton.fill_rows_triton(out, rows, True),
        "the band kernel": lambda: BAND(q, k, v, -512, 512),
        "the band kernel containing (contain=True)": lambda: BAND(q, k, v, -512, 512, contain=True),
        "the same, one NaN key per head (its tiles recomputed)": lambda: BAND(
            q, k_nan, v, -512, 512, contain=True
        ),
        "sparse_attention(backend='band')": lambda: sparse_attention(
            q, k, v, local(512), backend="band"
        ),
    }
    print(f"\n| piece, n = {n}, local(512) | GPU ms per call |")
    print("|---|---:|")
    for label, fn in rows_of.items():
        print(f"| {label} | {per_call_ms(fn, device):.3f} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, nargs="+", default=[4096, 16384, 65536])
    ap.add_argument("--backends", default="band,flex")
    ap.add_argument("--no-backward", action="store_true")
    ap.add_argument(
        "--pieces", type=int, default=0, metavar="N",
        help="instead: the band backend's containment piece by piece at length N (CUDA events)",
    )  # fmt: skip
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
    if args.pieces:
        if device == "cpu" and not interpreting():
            raise SystemExit("--pieces on the CPU runs the kernels in Triton's interpreter: "
                             "set TRITON_INTERPRET=1")  # fmt: skip
        if device == "cpu":
            from tests.kernels.interpreter import patch  # Triton 3.6's interpreter, numpy 2.3

            patch()
        pieces(min(args.pieces, 256) if device == "cpu" else args.pieces, device)
        return
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
                        + "".join(
                            f"| {t[f]:.3f} ({t[f] / base:.2f}x) " for f in ("shipped", "torch ops")
                        )
                        + "|",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
