"""Window attention on one GPU against the fastest dense attention of the same run.

    PYTHONPATH=src python3 benchmarks/attention_band.py             # the docs/benchmarks.md tables
    PYTHONPATH=src python3 benchmarks/attention_band.py --n 65536 --no-backward
    PYTHONPATH=src python3 benchmarks/attention_band.py --n 16384 65536 --no-composite \
        --paths "library band,library auto,band kernel alone"   # no compiles: about 100 s

Shapes: B=1, H=16, D=128, bfloat16, ``local(512)`` (|i - j| <= 512) and its causal form
``causal() & local(512)`` (= ``band(0, 512)``), n = 4k / 16k / 64k.

Dense baselines, every one timed in this run: ``scaled_dot_product_attention`` as torch
dispatches it by default (no mask; ``is_causal=True`` for the causal rows: the dense work a
model would do instead), and forced to each fused backend (cuDNN, flash, memory-efficient).
**Every speed-up is against the fastest of them** ("best dense"); the forced-flash figure,
which earlier tables used as their only baseline, is an extra column.

Sparse paths: FlexAttention with torch's ``create_block_mask`` (the plain FlexAttention
recipe, which contains nothing), and ``sparse_attention`` (which contains non-finite keys and
values) with the flex backend (our analytic block mask), the band kernel (``backend="band"``,
kernels/band_attention.py), ``auto``, and up to n = 16384 the dense backend (masked SDPA over
the materialised (n, n) mask); and the band kernel alone (``band_attention`` without
containment); forward and forward + backward (a training step's attention:
``out.backward(grad)``). Composite patterns
(``local | global_tokens`` and its causal form, ``causal & (local | strided)``, ``local |
strided``, ``dilated``) run through FlexAttention, through the ``bands`` backend (the band
kernel piece by piece, global tokens as dense rows and columns) and through ``auto``.

Times are medians of ``triton.testing.do_bench`` (CUDA events, L2 not flushed: q, k, v of
64k are 256 MiB each). TFLOP/s counts the pattern's pairs only (4·nnz·D per head forward,
2.5x that backward). Each sparse output is checked against the band kernel's (max abs
difference) and, at n <= 16k, against masked SDPA in float32.
"""

from __future__ import annotations

import argparse
import time
import warnings
from math import nan

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.nn.attention.flex_attention import create_block_mask, flex_attention

from sparsetorch.attention import (
    causal,
    dilated,
    global_tokens,
    local,
    sparse_attention,
    strided,
)
from sparsetorch.attention.backends import bands_unsupported, choose
from sparsetorch.kernels.band_attention import band_attention

DENSE = {
    "default": None,
    "cudnn": SDPBackend.CUDNN_ATTENTION,
    "flash": SDPBackend.FLASH_ATTENTION,
    "efficient": SDPBackend.EFFICIENT_ATTENTION,
}


DENSE_BACKEND_MAX_N = 16384  # the library's dense backend, timed up to this length


def ms(fn, budget_ms: float = 200.0) -> float:
    from triton.testing import do_bench

    return do_bench(fn, warmup=50, rep=budget_ms, return_mode="median")


def dense_fn(q, k, v, is_causal: bool, backend, grad=None):
    def run():
        if backend is None:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=is_causal)
        else:
            with sdpa_kernel([backend]):
                out = F.scaled_dot_product_attention(q, k, v, is_causal=is_causal)
        if grad is not None:
            out.backward(grad)
        return out

    return run


def time_dense(q, k, v, is_causal: bool, grad=None) -> dict[str, float]:
    out = {}
    for name, backend in DENSE.items():
        try:
            out[name] = ms(dense_fn(q, k, v, is_causal, backend, grad))
        except RuntimeError as exc:  # a backend refusing this shape
            out[name] = float("nan")
            print(f"  dense {name}: {str(exc).splitlines()[0][:100]}")
    return out


def sparse_fns(q, k, v, pattern, lo_hi, grad=None, paths=None):
    """The sparse paths timed, each a closure; ``paths`` keeps only those named. ``lo_hi``:
    the pattern's band, for the kernel called directly with nothing contained."""
    n = q.shape[2]
    compiled = torch.compile(flex_attention, dynamic=True)  # torch's own, no containment
    theirs = create_block_mask(pattern.mask_mod(n, q.device), None, None, n, n, device=q.device)

    def wrap(call):
        def run():
            out = call()
            if grad is not None:
                out.backward(grad)
            return out

        return run

    fns = {
        "flex + create_block_mask": wrap(lambda: compiled(q, k, v, block_mask=theirs)),
        "library flex": wrap(lambda: sparse_attention(q, k, v, pattern, backend="flex")),
        "library band": wrap(lambda: sparse_attention(q, k, v, pattern, backend="band")),
        "library auto": wrap(lambda: sparse_attention(q, k, v, pattern, backend="auto")),
        "band kernel alone": wrap(lambda: band_attention(q, k, v, *lo_hi)),
    }
    if n <= DENSE_BACKEND_MAX_N:  # the dense backend materialises the (n, n) mask
        fns["library dense"] = wrap(lambda: sparse_attention(q, k, v, pattern, backend="dense"))
    return {name: fn for name, fn in fns.items() if paths is None or name in paths}


def tflops(pattern, n, heads, dim, t_ms, factor=1.0) -> float:
    return 4 * pattern.nnz(n) * dim * heads * factor / (t_ms * 1e-3) / 1e12


def check(q, k, v, pattern, with_flex: bool = True) -> str:
    band = sparse_attention(q, k, v, pattern, backend="band").float()
    texts = [f"band all finite {bool(band.isfinite().all())}"]
    if with_flex:
        flex = sparse_attention(q, k, v, pattern, backend="flex").float()
        texts.append(f"band vs flex max abs {float((band - flex).abs().max()):.3g}")
    n = q.shape[2]
    if n <= 16384:
        ref = F.scaled_dot_product_attention(
            q[:, :4].float(), k[:, :4].float(), v[:, :4].float(), attn_mask=pattern.mask(n, "cuda")
        )
        err = float((band[:, :4] - ref).abs().max())
        texts.append(f"band vs fp32 masked SDPA (4 heads) max abs {err:.3g}")
    return ", ".join(texts)


def inputs(n: int, args) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q, k, v (1, heads, n, dim) bfloat16 on the GPU, seeded by n."""
    g = torch.Generator(device="cuda").manual_seed(n)
    shape = (1, args.heads, n, args.dim)
    return tuple(
        torch.randn(shape, device="cuda", dtype=torch.bfloat16, generator=g) for _ in range(3)
    )


def run_band(args, rows, began):
    device = torch.device("cuda")
    for causal_form in (False, True):
        pattern = causal() & local(args.window) if causal_form else local(args.window)
        for n in args.n:
            q, k, v = inputs(n, args)
            row = {"pattern": repr(pattern), "n": n, "causal": causal_form}
            row["dense"] = time_dense(q, k, v, causal_form)
            lo_hi = (0 if causal_form else -args.window, args.window)
            fns = sparse_fns(q, k, v, pattern, lo_hi, paths=args.paths)
            row["sparse"] = {name: ms(fn) for name, fn in fns.items()}
            row["check"] = check(
                q, k, v, pattern, args.paths is None or "library flex" in args.paths
            )
            row["auto"] = choose(pattern, n, device, False, torch.bfloat16, args.dim)
            row["tflops"] = tflops(
                pattern, n, args.heads, args.dim, row["sparse"].get("library band", nan)
            )
            if args.backward:
                qq, kk, vv = (t.detach().requires_grad_() for t in (q, k, v))
                grad = torch.randn_like(q)
                row["dense_bwd"] = time_dense(qq, kk, vv, causal_form, grad)
                row["sparse_bwd"] = {
                    name: ms(fn)
                    for name, fn in sparse_fns(qq, kk, vv, pattern, lo_hi, grad, args.paths).items()
                }
                row["tflops_bwd"] = tflops(
                    pattern,
                    n,
                    args.heads,
                    args.dim,
                    row["sparse_bwd"].get("library band", nan),
                    3.5,
                )
                del qq, kk, vv, grad
            rows.append(row)
            print(f"{pattern!r} n={n} done ({time.perf_counter() - began:.0f} s)", flush=True)
            for dk, sk in (("dense", "sparse"), ("dense_bwd", "sparse_bwd")):
                if dk in row:  # the row now: a run cut short still reports it
                    name, b = best(row[dk])
                    cells = ", ".join(f"{p} {t:.3f} ({b / t:.1f}x)" for p, t in row[sk].items())
                    dense = ", ".join(f"{k} {t:.3f}" for k, t in row[dk].items())
                    print(f"  {dk}: {dense}; best {name}; {cells}", flush=True)
            del q, k, v
            torch.cuda.empty_cache()


def run_composite(args, rows, began):
    device = torch.device("cuda")
    patterns = [
        local(args.window) | global_tokens([0]),
        causal() & (local(args.window) | global_tokens([0])),
        causal() & (local(args.window) | strided(256)),
        local(args.window) | strided(256),
        dilated(args.window // 4, 4),
    ]
    for n in args.n:
        q, k, v = inputs(n, args)
        grad = torch.randn_like(q)
        qq, kk, vv = (t.detach().requires_grad_() for t in (q, k, v))
        for pattern in patterns:
            is_causal = repr(pattern).startswith("causal")
            row = {"pattern": repr(pattern), "n": n, "dense": time_dense(q, k, v, is_causal)}
            row["dense_bwd"] = time_dense(qq, kk, vv, is_causal, grad)
            names = ["flex"] + (["bands"] if bands_unsupported(pattern, q, k) is None else [])
            picked = choose(pattern, n, device, False, torch.bfloat16, args.dim)
            for name in names:

                def fwd(p=pattern, name=name, qkv=(q, k, v)):
                    return sparse_attention(*qkv, p, backend=name)

                def step(p=pattern, name=name, qkv=(qq, kk, vv), grad=grad):
                    sparse_attention(*qkv, p, backend=name).backward(grad)

                try:
                    row[name] = ms(fwd)
                    row[name + "_bwd"] = ms(step)
                    torch.cuda.reset_peak_memory_stats()
                    step()
                    row[name + "_peak"] = torch.cuda.max_memory_allocated() / 2**30  # GiB
                except Exception as exc:  # a compile failure: the row says so, the rest runs
                    print(f"  {name} {pattern!r} n={n}: {type(exc).__name__}: {str(exc)[:200]}")
                    row[name] = row[name + "_bwd"] = float("nan")
            if "bands" in names and row["bands"] == row["bands"] and row["flex"] == row["flex"]:
                diff = fwd_out(q, k, v, pattern, "bands") - fwd_out(q, k, v, pattern, "flex")
                row["check"] = f"bands vs flex max abs {float(diff.abs().max()):.3g}"
            row["picked"] = picked
            if picked in names:  # auto runs a timed path: the same times
                row["auto"], row["auto_bwd"] = row[picked], row[picked + "_bwd"]
            else:  # masked dense SDPA (an n x n mask): forward only
                row["auto"] = float("nan")
                row["auto"] = ms(
                    lambda p=pattern, qkv=(q, k, v): sparse_attention(*qkv, p, backend="auto")
                )
            rows.append(row)
            print(
                f"  {pattern!r} n={n}: " + ", ".join(
                    f"{k} {row[k]:.3f}" for k in row if k in names or k[:-4] in names or k == "auto"
                ) + f"; dense {best(row['dense'])}, {best(row['dense_bwd'])}; peak GiB of a "
                "training step " + ", ".join(f"{k} {row[k]:.2f}" for k in row if k[-5:] == "_peak"),
                flush=True,
            )  # fmt: skip
        print(f"composite n={n} done ({time.perf_counter() - began:.0f} s)", flush=True)
        del q, k, v, qq, kk, vv, grad
        torch.cuda.empty_cache()


def fwd_out(q, k, v, pattern, backend):
    return sparse_attention(q, k, v, pattern, backend=backend).float()


def best(d: dict[str, float]) -> tuple[str, float]:
    name = min((k for k in d if d[k] == d[k]), key=d.get)
    return name, d[name]


def report(rows, composite, args) -> None:
    head = f"B1 H{args.heads} D{args.dim} bf16"
    for phase, dk, sk in (
        ("Forward", "dense", "sparse"),
        ("Forward + backward", "dense_bwd", "sparse_bwd"),
    ):
        if not rows or dk not in rows[0]:
            continue
        print(f"\n#### {phase}, {head} (ms; x = best dense / path)\n")
        paths = list(dict.fromkeys(p for r in rows for p in r[sk]))  # in the order timed
        print(
            "| pattern | n | SDPA default | cuDNN | flash | efficient | best dense | "
            + " | ".join(f"{p} (x)" for p in paths)
            + " | library band TFLOP/s | auto runs |"
        )
        print("|---|---:|---:|---:|---:|---:|---|" + "---:|" * (len(paths) + 1) + "---|")
        for r in rows:
            d = r[dk]
            name, b = best(d)
            s = r[sk]
            cells = " | ".join(f"{s[p]:.3f} ({b / s[p]:.1f}x)" if p in s else "-" for p in paths)
            tf = r["tflops"] if sk == "sparse" else r["tflops_bwd"]
            print(
                f"| `{r['pattern']}` | {r['n']} | {d['default']:.3f} | {d['cudnn']:.3f} | "
                f"{d['flash']:.3f} | {d['efficient']:.3f} | {name} {b:.3f} | {cells} | "
                f"{tf:.0f} | {r['auto']} |"
            )
    print("\nChecks:")
    for r in rows:
        print(f"- `{r['pattern']}` n={r['n']}: {r['check']}")
    if composite:
        for phase, dk, suffix in (
            ("forward", "dense", ""),
            ("forward + backward", "dense_bwd", "_bwd"),
        ):
            print(f"\n#### Composite patterns, {phase}, {head} (ms; x = best dense / path)\n")
            print(
                "| pattern | n | best dense | library flex (x) | bands (x) | auto (x) | auto runs |"
            )
            print("|---|---:|---|---:|---:|---:|---|")
            for r in composite:
                name, b = best(r[dk])
                cells = [
                    f"{r[p + suffix]:.3f} ({b / r[p + suffix]:.1f}x)" if p + suffix in r else "-"
                    for p in ("flex", "bands", "auto")
                ]
                print(
                    f"| `{r['pattern']}` | {r['n']} | {name} {b:.3f} | {' | '.join(cells)} | "
                    f"{r['picked']} |"
                )
        print("\nChecks:")
        for r in composite:
            if "check" in r:
                print(f"- `{r['pattern']}` n={r['n']}: {r['check']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, nargs="+", default=[4096, 16384, 65536])
    parser.add_argument("--window", type=int, default=512)
    parser.add_argument("--heads", type=int, default=16)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--no-backward", dest="backward", action="store_false")
    parser.add_argument("--no-composite", dest="composite", action="store_false")
    parser.add_argument(
        "--only-composite", action="store_true", help="the composite patterns' tables only"
    )
    parser.add_argument(
        "--paths",
        type=lambda text: [p.strip() for p in text.split(",")],
        default=None,
        help="the window rows' sparse paths to time, comma-separated (default all: "
        "'flex + create_block_mask', 'library flex', 'library band', 'library auto', "
        "'band kernel alone', 'library dense'); the flex paths compile, which take most "
        "of a row's time",
    )
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    assert torch.cuda.is_available(), "needs a CUDA GPU"
    torch._dynamo.config.recompile_limit = max(64, torch._dynamo.config.recompile_limit)
    began = time.perf_counter()
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, {time.strftime('%Y-%m-%d')}")
    rows, composite = [], []
    if not args.only_composite:
        run_band(args, rows, began)
    if args.composite:
        run_composite(args, composite, began)
    report(rows, composite, args)
    print(f"\n({time.perf_counter() - began:.0f} s)")


if __name__ == "__main__":
    main()
