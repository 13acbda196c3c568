"""End to end: tokens/s of the runner's Transformer with 2:4 MLPs vs the same dense model.

    PYTHONPATH=src python3 benchmarks/gpu_e2e.py [--quick] [--device cuda|cpu] [--no-docs]

Model: ``models.build("transformer")`` (CausalTransformer: pre-LN blocks, plain causal
attention, GELU MLP of width 4 d_model, vocabulary 256), bf16 on CUDA. Full: d_model 4096,
4 layers, 32 heads, context 1024 (meant to take < 4 minutes on one H100, most of it compiling);
``--quick``: d_model 2048, 2 layers, 16 heads, context 512, no compile mode (< 1 minute);
``--device cpu``: d_model 256, 2 layers, float32, the 2:4 layers on the reference path: a
correctness run of every step (timings meaningless, nothing written to the docs).

Both models are the same network: the MLP weights are pruned to 2:4 with ``st.prune``
(magnitude, pattern "2:4", masks then made permanent); the dense model multiplies the pruned
weights densely, the sparse one is a copy after ``st.sparsify_(model, "2:4")`` on the MLP
Linears (dense and every 2:4 engine are candidates; a fresh measured dispatcher picks per
layer shape and M bucket during the eager warm-up). Attention and head Linears stay dense.

Measured, in one run, median of 7 rounds of back-to-back calls between two CUDA events, the
dense and the 2:4 model alternating round by round (host time included, as serving pays it;
warm-up calls first):
- prefill: ``model(idx)`` on batch x seq tokens, logits for every position;
- decode: one step for a batch of sequences, one new token each, with a KV cache holding
  ``context - 1`` earlier tokens (the step embeds the token, writes its key/value into the cache
  slot, attends over the whole cache with SDPA, runs the MLPs on M = batch rows and the head).
  The step repeats at the same position: the steady cost of a token at that context length.
Modes: ``eager``; ``graph``: the whole step captured in one CUDA graph and replayed;
``compile``: ``torch.compile(mode="reduce-overhead", fullgraph=True)`` (decode only; prefill
is not host bound and its compile would not fit the time budget).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from _docs import write_section

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import sparsetorch as st
from sparsetorch.deploy import Dispatcher, SparseLinear, graph_timer, m_bucket
from sparsetorch.deploy.dispatch import default_timer
from sparsetorch.deploy.graphed import capture

SECTION = "End to end: Transformer with 2:4 MLPs (GPU)"
VOCAB = 256


@dataclass(frozen=True)
class Preset:
    d_model: int
    n_layers: int
    n_heads: int
    context: int
    prefill: tuple[tuple[int, int], ...]  # (batch, seq)
    decode: tuple[int, ...]  # batch sizes
    compile_decode: tuple[int, ...]  # batch sizes also timed under torch.compile
    iters_prefill: int
    iters_decode: int


PRESETS = {
    "full": Preset(4096, 4, 32, 1024, ((4, 1024), (16, 1024)), (1, 4, 16), (1, 16), 5, 50),
    "quick": Preset(2048, 2, 16, 512, ((8, 512),), (1, 16), (), 3, 20),
    "cpu": Preset(256, 2, 4, 64, ((2, 64),), (1, 4), (1,), 2, 5),
}


def is_mlp(name: str) -> bool:
    return ".mlp." in f".{name}."


def build(preset: Preset, device: torch.device, dtype: torch.dtype, paths: list[str] | None):
    """(dense model, sparse model, sparse model for graphs): one pruned network, three
    executions; the last one's dispatcher times paths inside CUDA graphs (``graph_timer``),
    as graph and compile modes run them."""
    torch.manual_seed(0)
    with torch.device(device):
        model = st.models.build(
            "transformer",
            input_shape=(preset.context,),
            num_classes=VOCAB,
            d_model=preset.d_model,
            n_layers=preset.n_layers,
            n_heads=preset.n_heads,
        )
    model = model.to(dtype).eval()
    st.prune(model, pattern="2:4", filter_fn=lambda module, fqn: is_mlp(fqn))
    st.remove_masks(model)
    sparse = {}
    for name, timer in (("eager", default_timer), ("graph", graph_timer)):
        sparse[name] = copy.deepcopy(model)
        report = st.sparsify_(
            sparse[name],
            "2:4",
            filter_fn=lambda module, fqn: is_mlp(fqn),
            dispatcher=Dispatcher(timer=timer, cache_file=None),
            paths=paths,
        )
        if not report.swapped:
            raise RuntimeError(f"sparsify_ swapped no layer on {device}:\n{report}")
    return model, sparse["eager"], sparse["graph"]


def attend_step(attn, h: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, pos: int):
    """SparseAttention with plain causal attention for one new token per sequence; h (B, 1, E),
    caches (B, H, L, D) hold positions < pos and get this token's key/value at ``pos``."""
    b = h.shape[0]
    qkv = attn.qkv(h).view(b, 1, 3, attn.num_heads, -1)  # (B, 1, 3, H, D)
    q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, H, 1, D)
    k_cache[:, :, pos] = k[:, :, 0]
    v_cache[:, :, pos] = v[:, :, 0]
    y = F.scaled_dot_product_attention(q, k_cache[:, :, : pos + 1], v_cache[:, :, : pos + 1])
    return attn.proj(y.transpose(1, 2).reshape(b, 1, attn.embed_dim))  # (B, 1, E)


def decode_step(model, tokens: torch.Tensor, caches: list, pos: int) -> torch.Tensor:
    """Logits (B, 1, vocab) of the next token after ``tokens`` (B, 1) at position ``pos``."""
    x = model.tok(tokens) + model.pos.weight[pos]  # (B, 1, E)
    for block, (k_cache, v_cache) in zip(model.blocks, caches, strict=True):
        x = x + attend_step(block.attn, block.ln1(x), k_cache, v_cache, pos)
        x = x + block.mlp(block.ln2(x))
    return model.head(model.ln(x))


def new_caches(model, batch: int, length: int, like: torch.Tensor, generator=None) -> list:
    attn = model.blocks[0].attn
    shape = (batch, attn.num_heads, length, attn.embed_dim // attn.num_heads)  # (B, H, L, D)
    return [
        tuple(
            torch.randn(shape, generator=generator, device=like.device).to(like.dtype)
            for _ in range(2)
        )
        for _ in model.blocks
    ]


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


def check(dense, sparse, device, dtype) -> list[str]:
    """Sparse prefill == dense prefill, and cached decoding == the library's forward, on both
    models (bf16 tolerance). Raises on a mismatch; returns the measured errors."""
    tol = 3e-2 if dtype in (torch.bfloat16, torch.float16) else 1e-4
    g = torch.Generator().manual_seed(1)
    idx = torch.randint(0, VOCAB, (2, 32), generator=g).to(device)
    with torch.no_grad():
        reference = dense(idx)  # (2, 32, vocab)
        errors = {"prefill, 2:4 vs dense": relative_error(sparse(idx), reference)}
        for name, model in (("dense", dense), ("2:4", sparse)):
            caches = new_caches(model, 2, idx.shape[1], reference)
            for pos in range(idx.shape[1]):  # token by token through the cache
                logits = decode_step(model, idx[:, pos : pos + 1], caches, pos)
            errors[f"cached decode ({name}) vs dense forward"] = relative_error(
                logits[:, 0], reference[:, -1]
            )
    bad = {k: e for k, e in errors.items() if not e <= tol}
    if bad:
        raise RuntimeError(f"outputs differ beyond {tol}: {bad}")
    return [f"{k}: relative error {e:.1e}" for k, e in errors.items()]


def sample(fn: Callable[[], object], device, iters: int) -> float:
    """Seconds per call over ``iters`` back-to-back calls timed between two events."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(iters):
            fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3 / iters
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    return (time.perf_counter() - t0) / iters


def prepared(mode: str, step: Callable[[], object]) -> Callable[[], object]:
    """``step`` as it runs in a mode: eagerly, replayed from one CUDA graph, or compiled;
    warmed up (dispatcher measurement, autotuning, graph recording happen here)."""
    step()  # eager first: the dispatcher measures outside any capture or trace
    if mode == "eager":
        call = step
    elif mode == "graph":
        graph, _ = capture(step)
        call = graph.replay
    else:
        compiled = torch.compile(step, mode="reduce-overhead", fullgraph=True, dynamic=False)

        def call():
            torch.compiler.cudagraph_mark_step_begin()
            return compiled()

    for _ in range(3):
        call()
    return call


def interleaved(calls: dict[str, Callable[[], object]], device, iters: int, rounds: int = 7):
    """Median seconds per call of each, sampled in alternation (dense, 2:4, dense, ...), so a
    drift of the host or the GPU clock during the run hits both alike."""
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            samples[name].append(sample(call, device, iters))
    return {name: statistics.median(v) for name, v in samples.items()}


def mlp_choices(model, m: int) -> str:
    """Paths the sparse MLP layers chose for M rows (per layer role, across layers)."""
    roles: dict[str, set[str]] = {}
    for name, module in model.named_modules():
        if isinstance(module, SparseLinear):
            role = "fc1" if name.endswith("mlp.0") else "fc2"
            only = next(iter(module.paths)) if len(module.paths) == 1 else "not measured"
            roles.setdefault(role, set()).add(module.choices.get(m_bucket(m), only))
    return ", ".join(f"{r} {'/'.join(sorted(c))}" for r, c in sorted(roles.items()))


def dispatcher_table(model, title: str) -> list[str]:
    """What the model's dispatcher measured per MLP shape and M bucket (µs per call)."""
    decisions = {}  # (out, in, bucket) -> decision, once per layer shape
    for module in model.modules():
        if isinstance(module, SparseLinear):
            for bucket in module.choices:
                key = module.dispatcher.key(module.layer_key, module.device, bucket)
                shape = (module.out_features, module.in_features, bucket)
                decisions.setdefault(shape, module.dispatcher.decisions[key])
    if not decisions:
        return []
    names = sorted({p for d in decisions.values() for p in d["seconds"]})
    rows = [
        f"Dispatcher measurements, {title} (µs per call; inf = refused):",
        "",
        "| out x in, M bucket | " + " | ".join(names) + " | choice |",
        "|---|" + "---:|" * len(names) + "---|",
    ]
    for (out, inp, bucket), d in sorted(decisions.items()):
        cells = [f"{d['seconds'][p] * 1e6:.1f}" if p in d["seconds"] else "-" for p in names]
        rows.append(f"| {out}x{inp} M{bucket} | " + " | ".join(cells) + f" | {d['choice']} |")
    return rows


def run(args, preset: Preset, device: torch.device, dtype: torch.dtype) -> tuple[list[str], bool]:
    t0 = time.perf_counter()
    paths = (
        args.paths.split(",")
        if args.paths
        else (None if device.type == "cuda" else ["nm_reference"])
    )
    dense, sparse_eager, sparse_graph = build(preset, device, dtype, paths)
    print(f"# built and sparsified in {time.perf_counter() - t0:.1f} s", flush=True)
    notes = check(dense, sparse_eager, device, dtype)
    print("# " + "; ".join(notes), flush=True)
    modes = [m for m in args.modes.split(",") if m]
    if device.type != "cuda":
        modes = [m for m in modes if m != "graph"]  # CUDA graphs need CUDA
    rows = [
        "| phase | batch x tokens | mode | dense tok/s | 2:4 tok/s | speed-up | 2:4 MLP paths |",
        "|---|---|---|---|---|---|---|",
    ]
    failed = False
    g = torch.Generator().manual_seed(2)
    cases = [("prefill", b, t) for b, t in preset.prefill] + [
        ("decode", b, 1) for b in preset.decode
    ]
    for phase, batch, seq in cases:
        idx = torch.randint(0, VOCAB, (batch, seq), generator=g).to(device)
        for mode in modes:
            if mode == "compile" and (phase == "prefill" or batch not in preset.compile_decode):
                continue
            started = time.perf_counter()
            torch._dynamo.reset()
            calls, cells, alive = {}, {}, []  # alive: a graph reads its step's KV caches
            # graph and compile modes run the model whose dispatcher timed paths in graphs
            sparse = sparse_eager if mode == "eager" else sparse_graph
            for label, model in (("dense", dense), ("2:4", sparse)):
                if phase == "prefill":
                    step = lambda model=model: model(idx)  # noqa: E731
                    iters = preset.iters_prefill
                else:
                    caches = new_caches(model, batch, preset.context, dense.pos.weight)
                    if mode == "compile":
                        for k_cache, v_cache in caches:  # mutated in place: fixed addresses
                            torch._dynamo.mark_static_address(k_cache)
                            torch._dynamo.mark_static_address(v_cache)
                    step = lambda model=model, c=caches: decode_step(  # noqa: E731
                        model, idx, c, preset.context - 1
                    )
                    iters = preset.iters_decode
                alive.append(step)
                try:
                    with torch.no_grad():
                        calls[label] = prepared(mode, step)
                except Exception as exc:  # report in the table, keep measuring the rest
                    failed = True
                    traceback.print_exc()
                    cells[label] = f"failed ({type(exc).__name__})"
            with torch.no_grad():
                seconds = interleaved(calls, device, iters)
            cells.update({label: batch * seq / t for label, t in seconds.items()})
            d, s = cells["dense"], cells["2:4"]
            ratio = f"{s / d:.2f}x" if isinstance(d, float) and isinstance(s, float) else "n/a"
            fmt = lambda v: f"{v:,.0f}" if isinstance(v, float) else v  # noqa: E731
            chosen = mlp_choices(sparse, batch * seq)
            rows.append(
                f"| {phase} | {batch} x {seq} | {mode} | {fmt(d)} | {fmt(s)} | {ratio} | {chosen} |"
            )
            print(f"{rows[-1]}  # {time.perf_counter() - started:.0f} s", flush=True)
    rows += [
        "",
        *dispatcher_table(sparse_eager, "default timer (host included), eager mode"),
        "",
        *dispatcher_table(
            sparse_graph, "graph_timer (GPU time in a CUDA graph), graph and compile"
        ),
        "",
        *[f"Checks: {n}." for n in notes],
    ]
    rows.append(f"Run time {time.perf_counter() - t0:.0f} s.")
    return rows, failed


def header(args, preset: Preset, device: torch.device, dtype: torch.dtype) -> list[str]:
    if device.type == "cuda":
        try:
            import triton
        except ImportError:  # the table is still worth writing; it says Triton is missing
            triton = argparse.Namespace(__version__="not installed")
        cslt = getattr(torch.backends.cusparselt, "version", lambda: None)()
        env = (
            f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}, "
            f"Triton {triton.__version__}, cuSPARSELt {cslt}"
        )
    else:
        env = f"CPU, torch {torch.__version__}"
    flags = " --quick" if args.quick else ""
    return [
        f"## {SECTION}",
        "",
        f"Command (GPU machine, repo root): `PYTHONPATH=src python3 benchmarks/gpu_e2e.py{flags}`.",
        f"Device: {env}; {dtype}.",
        f"Model: CausalTransformer d_model {preset.d_model}, {preset.n_layers} layers, "
        f"{preset.n_heads} heads, MLP {4 * preset.d_model}, vocabulary {VOCAB}, context "
        f"{preset.context}; MLP weights pruned to 2:4 with `st.prune`, the 2:4 model is "
        '`st.sparsify_(model, "2:4")` on the MLP Linears (attention and head stay dense).',
        "Prefill: `model(idx)` on batch x seq tokens. Decode: one new token per sequence with a "
        f"KV cache of {preset.context - 1} earlier tokens (MLP M = batch), repeated at that "
        "position. Tokens/s = tokens per call / seconds per call, the median of 7 rounds of "
        "back-to-back calls between CUDA events, dense and 2:4 rounds alternating. Modes: eager; graph = the whole step in one CUDA graph; compile "
        '= `torch.compile(mode="reduce-overhead", fullgraph=True)`, decode only. In graph and '
        "compile modes a graphed path (`*_graph`) runs its plain kernel inside the outer graph, "
        "and the 2:4 model is a second copy whose dispatcher timed the paths with `graph_timer` "
        "(GPU time inside a CUDA graph, as these modes run them; eager: host time included).",
        "",
    ]


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="smaller model and fewer cases (< 1 min)")
    ap.add_argument(
        "--device",
        choices=["cuda", "cpu"],
        default="cuda",
        help="cpu: correctness run of a tiny model",
    )
    ap.add_argument(
        "--modes", default="eager,graph,compile", help="comma list of eager, graph, compile"
    )
    ap.add_argument(
        "--paths",
        default="",
        help="comma list of sparsify_ paths (default: dense + every 2:4 engine on cuda, "
        "nm_reference on cpu)",
    )
    ap.add_argument(
        "--no-docs",
        action="store_true",
        help="do not write docs/benchmarks.md (never written for --quick or --device cpu)",
    )
    args = ap.parse_args()
    unknown = set(args.modes.split(",")) - {"eager", "graph", "compile"}
    if unknown:
        ap.error(f"--modes: unknown {sorted(unknown)}; allowed: eager, graph, compile")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: no CUDA device here (use --device cpu for the correctness run)")
    preset = PRESETS["cpu" if device.type == "cpu" else "quick" if args.quick else "full"]
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    rows, failed = run(args, preset, device, dtype)
    text = "\n".join([*header(args, preset, device, dtype), *rows])
    print(text)
    if device.type == "cuda" and not args.quick and not args.no_docs:
        write_section(SECTION, text, ROOT / "docs" / "benchmarks.md")
        print(f"# wrote the section {SECTION!r} of docs/benchmarks.md")
    if failed:
        sys.exit("some measurements failed (see the tracebacks above)")


if __name__ == "__main__":
    main()
