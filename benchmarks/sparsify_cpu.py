"""sparsify_ on the CPU as a new user meets it: the first call of a ViT-B-sized encoder, and a
CSR layer at batch 1 against torch's own CSR matmul.

    PYTHONPATH=src python benchmarks/sparsify_cpu.py [--layers 12] [--threads 1] [--gpt2]

1. A ViT-B/16-sized encoder: ``layers`` blocks built as torchvision's ViT builds them
   (LayerNorm, ``nn.MultiheadAttention(768, 12)``, LayerNorm, MLP 768 -> 3072 -> 768 in an
   ``nn.Sequential``), every weight 90% pruned (uniform magnitude), one image's 197 tokens. ``st.sparsify_(model, "csr")`` then the first forward (where every layer chooses by
   measurement), wall seconds, and how many (layer key, M bucket) measurements the dispatcher
   made; then the steady forward against the dense model (median of interleaved rounds).
2. ``--gpt2``: GPT-2 small built from its config (12 layers, 768 wide, random weights, eager
   attention; no download), its 48 transformers ``Conv1D`` layers 90% pruned (uniform
   magnitude) and swapped by ``sparsify_(.., "csr")``: a 128-token forward and ``generate``
   of 16 tokens after an 8-token prompt, batch 1, against the dense model (interleaved
   medians), with the first call's seconds. Needs transformers.
3. One Linear (768 -> 768 and 768 -> 3072) at 95% sparsity, batch 1: the layer after
   ``sparsify_(.., "csr")`` against torch's own CSR matmul (``w.to_sparse_csr()``, ``@``) and
   dense ``F.linear``, interleaved medians. Ratios > 1: torch's CSR (or dense) is slower.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

import sparsetorch as st
from sparsetorch.deploy import Dispatcher, SparseLinear


def seconds(fn, calls: int = 20) -> float:
    fn()
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t0) / calls


def interleaved(fns: dict, rounds: int = 7, calls: int = 20) -> dict[str, float]:
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            samples[k].append(seconds(fn, calls))
    return {k: statistics.median(v) for k, v in samples.items()}


class Block(nn.Module):
    """torchvision's ViT encoder block: pre-LN attention and MLP, residuals."""

    def __init__(self, dim: int = 768, heads: int = 12, mlp: int = 3072) -> None:
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.self_attention = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp), nn.GELU(), nn.Linear(mlp, dim))

    def forward(self, x):
        y = self.ln_1(x)
        x = x + self.self_attention(y, y, y, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


def encoder(layers: int) -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(*[Block() for _ in range(layers)]).eval()
    st.prune(model, sparsity=0.9, distribution="uniform")
    st.remove_masks(model)
    return model


def first_call(args) -> list[str]:
    import copy

    dense = encoder(args.layers)
    model = copy.deepcopy(dense)
    x = torch.randn(1, 197, 768)
    dispatcher = Dispatcher(cache_file=None)
    mlp_only = (lambda m, fqn: ".mlp." in f".{fqn}.") if args.mlp_only else None
    with torch.no_grad():
        t0 = time.perf_counter()
        report = st.sparsify_(model, "csr", filter_fn=mlp_only, dispatcher=dispatcher)
        swap = time.perf_counter() - t0
        t0 = time.perf_counter()
        model(x)
        first = time.perf_counter() - t0
        steady = interleaved({"dense": lambda: dense(x), "sparse": lambda: model(x)}, 5, 3)
    layers = [m for m in model.modules() if isinstance(m, SparseLinear)]
    chosen = sorted({c for m in layers for c in m.choices.values()})
    return [
        f"| {args.layers} | {len(report.swapped)} | {len(report.skipped)} | {swap:.1f} | "
        f"{first:.1f} | {len(dispatcher.decisions)} | {', '.join(chosen) or '-'} | "
        f"{steady['dense'] * 1e3:.1f} | {steady['sparse'] * 1e3:.1f} | "
        f"{steady['dense'] / steady['sparse']:.2f}x |"
    ]


def gpt2(args) -> list[str]:
    import copy

    import transformers

    transformers.logging.set_verbosity_error()
    torch.manual_seed(0)
    config = transformers.GPT2Config(attn_implementation="eager")  # GPT-2 small's shapes
    dense = transformers.GPT2LMHeadModel(config).eval()
    conv1d = lambda m, fqn: type(m).__name__ == "Conv1D"  # noqa: E731
    st.prune(dense, sparsity=0.9, distribution="uniform", filter_fn=conv1d)
    st.remove_masks(dense)
    model = copy.deepcopy(dense)
    dispatcher = Dispatcher(cache_file=None)
    ids = torch.randint(0, config.vocab_size, (1, 128), generator=torch.Generator().manual_seed(0))
    prompt = ids[:, :8]

    def generate(m):
        return m.generate(prompt, max_new_tokens=16, min_new_tokens=16, do_sample=False)

    with torch.no_grad():
        t0 = time.perf_counter()
        report = st.sparsify_(model, "csr", filter_fn=conv1d, dispatcher=dispatcher)
        model(ids)
        generate(model)
        first = time.perf_counter() - t0
        assert torch.equal(generate(model), generate(dense)), "greedy tokens differ"
        forward = interleaved({"dense": lambda: dense(ids), "sparse": lambda: model(ids)}, 5, 2)
        steps = interleaved(
            {"dense": lambda: generate(dense), "sparse": lambda: generate(model)}, 5, 1
        )
    layers = [m for m in model.modules() if isinstance(m, SparseLinear)]
    chosen = sorted({c for m in layers for c in m.choices.values()})
    return [
        f"| {what} | {len(report.swapped)} | {first:.1f} | {', '.join(chosen)} | "
        f"{t['dense'] * 1e3:.1f} | {t['sparse'] * 1e3:.1f} | {t['dense'] / t['sparse']:.2f}x |"
        for what, t in (("forward, 128 tokens", forward), ("generate 16 tokens after 8", steps))
    ]


def csr_layer() -> list[str]:
    rows = []
    for out_f, in_f in ((768, 768), (3072, 768)):
        torch.manual_seed(0)
        lin = nn.Linear(in_f, out_f)
        with torch.no_grad():
            lin.weight.mul_(torch.rand_like(lin.weight) >= 0.95)
        w, b = lin.weight.detach(), lin.bias.detach()
        theirs = w.to_sparse_csr()
        x = torch.randn(1, in_f)
        layer = SparseLinear(lin, ["dense", "csr", "csr_torch"], Dispatcher(cache_file=None))
        with torch.no_grad():
            layer(x)  # chooses
            t = interleaved(
                {
                    "ours": lambda: layer(x),
                    "torch csr": lambda: (theirs @ x.T).T + b,
                    "dense": lambda: F.linear(x, w, b),
                },
                rounds=9,
                calls=200,
            )
        rows.append(
            f"| {out_f}x{in_f} | {t['dense'] * 1e6:.1f} | {t['torch csr'] * 1e6:.1f} | "
            f"{t['ours'] * 1e6:.1f} ({layer.choices[1]}) | {t['torch csr'] / t['ours']:.2f}x | "
            f"{t['dense'] / t['ours']:.2f}x |"
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--mlp-only", action="store_true", help="sparsify the MLP Linears only (older versions)"
    )
    ap.add_argument("--no-layer", action="store_true", help="skip the single-Linear table")
    ap.add_argument("--gpt2", action="store_true", help="also GPT-2 small (needs transformers)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    began = time.perf_counter()
    print(f"torch {torch.__version__}, {args.threads} thread(s), {time.strftime('%Y-%m-%d')}\n")
    print(
        "| encoder layers | swapped | kept dense | sparsify_ s | first forward s | "
        "measurements | chosen | dense ms | sparse ms | speed-up |"
    )
    print("|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|")
    print("\n".join(first_call(args)))
    if args.gpt2:
        print(
            "\n| GPT-2 small, 90% Conv1D, batch 1 | swapped | first calls s | chosen | "
            "dense ms | sparse ms | speed-up |"
        )
        print("|---|---:|---:|---|---:|---:|---:|")
        print("\n".join(gpt2(args)))
    if not args.no_layer:
        print(
            "\n| Linear (out x in), 95%, M = 1 | dense µs | torch CSR µs | ours µs (path) | "
            "torch CSR / ours | dense / ours |"
        )
        print("|---|---:|---:|---:|---:|---:|")
        print("\n".join(csr_layer()))
    print(f"\n({time.perf_counter() - began:.0f} s)")


if __name__ == "__main__":
    main()
