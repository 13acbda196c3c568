"""Never slower end to end: 2:4 models against their dense selves, with sparsify_'s choices
verified in the whole model as it is served (eager, CUDA graph, torch.compile).

    PYTHONPATH=src python3 benchmarks/e2e_models.py                      # GPU, every model
    PYTHONPATH=src python3 benchmarks/e2e_models.py --models llama4096 --modes eager,graph
    PYTHONPATH=src:/path/to/transformers python3 benchmarks/e2e_models.py --device cpu   # checks

Models (bfloat16, random init from a config, decoder Linears pruned to 2:4 with ``st.prune``,
masks made permanent; embeddings, norms and the LM head stay dense):
- ``llama2048``: HF ``LlamaForCausalLM``, hidden 2048, MLP 8192, 16 heads (8 kv), 4 layers;
- ``llama4096``: hidden 4096, MLP 14336, 32 heads (8 kv), 2 layers;
- ``own4096``: the library's ``CausalTransformer``, d_model 4096, MLP 16384, 32 heads, 4 layers.
(Fewer layers than the released models: the per-layer work is the same, and the device time of
one run is short. The dense LM head weighs more in a shallow model: ``--layers 32`` gives the
released depth, ``--workloads`` keeps a few rows.)

Workloads: prefill (``model(ids)``, the LM head on the last position only) at batch x tokens;
decode: one new token per sequence with a static KV cache of ``context`` positions (HF
``StaticCache``; the library model: its own cached step), the step of ``generate``.

For each serving mode the 2:4 model is a copy sparsified with ``st.sparsify_(..., "2:4",
workload=..., serve=mode)``: every layer chooses by measurement (``graph_timer`` for graph and
compile), then ``verify_`` runs each workload in that mode and pins layers to dense where the
whole model is not faster. Compile rows use the choices verified in graph mode (verifying
under compile recompiles per configuration; reduce-overhead replays a CUDA graph too).
After the last workload is verified, ``unwrap_dense_`` gives back a plain ``nn.Linear`` for
every layer that runs dense in all of them. Timing: tokens/s from the median of ``--rounds``
(9) rounds of back-to-back calls between CUDA events, dense and 2:4 alternating (and which
goes first alternating); speed-up = the median of each round's dense / 2:4 time. "layer
bound": the whole model's dense time t over t minus what the decoder Linears would save if
each ran the fastest path its dispatcher timed alone (Amdahl: the most 2:4 layers can give
there). ``--budget`` seconds: rows not reached are printed as not measured.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
import traceback
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import sparsetorch as st
from gpu_e2e import decode_step, new_caches, sample
from sparsetorch.deploy import Dispatcher, SparseLinear, graph_timer, unwrap_dense_, verify_
from sparsetorch.deploy.dispatch import default_timer, m_bucket

MODELS = {  # name: (kind, hidden, mlp, heads, kv heads, layers)
    "llama2048": ("llama", 2048, 8192, 16, 8, 4),
    "llama4096": ("llama", 4096, 14336, 32, 8, 2),
    "own4096": ("own", 4096, 16384, 32, 32, 4),
}
CPU_MODELS = {"llama2048": ("llama", 64, 128, 4, 2, 2), "own4096": ("own", 64, 256, 4, 4, 2)}
VOCAB = 32000


def is_decoder_linear(module, fqn: str) -> bool:
    return isinstance(module, torch.nn.Linear) and "lm_head" not in fqn and fqn != "head"


def build(name: str, spec, device, dtype, positions: int):
    kind, hidden, mlp, heads, kv, layers = spec
    torch.manual_seed(0)
    if kind == "llama":
        from transformers import LlamaConfig, LlamaForCausalLM

        config = LlamaConfig(
            hidden_size=hidden, intermediate_size=mlp, num_attention_heads=heads,
            num_key_value_heads=kv, num_hidden_layers=layers, vocab_size=VOCAB,
            max_position_embeddings=positions, attn_implementation="sdpa",
        )  # fmt: skip
        with torch.device(device):
            model = LlamaForCausalLM(config)
    else:
        with torch.device(device):
            model = st.models.build(
                "transformer", input_shape=(positions,), num_classes=VOCAB if device.type == "cuda"
                else 256, d_model=hidden, n_layers=layers, n_heads=heads,
            )  # fmt: skip
    model = model.to(dtype).eval()
    st.prune(model, pattern="2:4", filter_fn=is_decoder_linear)
    st.remove_masks(model)
    return kind, model


def workloads(kind, model, device, prefill, decode, context, vocab):
    """{label: (tokens per call, workload(module))}; decode workloads hold their caches."""
    g = torch.Generator().manual_seed(1)
    out = {}
    for b, t in prefill:
        ids = torch.randint(0, vocab, (b, t), generator=g).to(device)
        if kind == "llama":
            out[f"prefill {b} x {t}"] = (b * t, lambda m, ids=ids: m(ids, logits_to_keep=1).logits)
        else:
            out[f"prefill {b} x {t}"] = (b * t, lambda m, ids=ids: m(ids))
    for b in decode:
        tok = torch.randint(0, vocab, (b, 1), generator=g).to(device)
        if kind == "llama":
            from transformers import StaticCache

            cache = StaticCache(config=model.config, max_cache_len=context)
            pos = torch.tensor([context - 1], device=device)

            def step(m, tok=tok, cache=cache, pos=pos):
                rewind(cache, context - 1)
                return m(
                    input_ids=tok, past_key_values=cache, cache_position=pos, use_cache=True
                ).logits

        else:
            caches = new_caches(model, b, context, model.pos.weight)
            for kv in caches:  # written in place each step: fixed addresses for CUDA graphs
                for t in kv:
                    torch._dynamo.mark_static_address(t)

            def step(m, tok=tok, caches=caches):
                return decode_step(m, tok, caches, context - 1)

        out[f"decode {b} x 1"] = (b, step)
    return out


@torch.compiler.disable  # run as it is between compiled calls; a CUDA graph still captures it
def rewind(cache, position: int) -> None:
    """Put a static cache back to ``position`` filled slots, so that one decode step can be
    repeated: newer transformers keep the write position in the cache (a per-layer
    ``cumulative_length`` tensor) and ignore ``cache_position`` there. In place, so that a
    captured CUDA graph repeats it too."""
    for layer in getattr(cache, "layers", ()):
        length = getattr(layer, "cumulative_length", None)
        if isinstance(length, torch.Tensor):
            length.fill_(position)


def prepared(mode: str, model, fn):
    """``fn(model)`` as it runs in a mode, warmed up: eagerly, replayed from one CUDA graph, or
    through ``torch.compile(fn, mode="reduce-overhead")`` called with the model (compiling the
    model alone would leave the library model's decode step, which calls its submodules,
    eager)."""
    from sparsetorch.deploy.graphed import capture

    fn(model)  # eager first: nothing is measured inside a capture or a trace
    if mode == "eager":
        call = lambda: fn(model)  # noqa: E731
    elif mode == "graph":
        graph, _ = capture(lambda: fn(model))
        call = graph.replay
    else:
        compiled = torch.compile(fn, mode="reduce-overhead")

        def call():
            torch.compiler.cudagraph_mark_step_begin()
            return compiled(model)

    for _ in range(3):
        call()
    return call


def paired(dense, sparse, device, iters: int, rounds: int) -> tuple[float, float, float]:
    """(dense s/call, 2:4 s/call, speed-up): the medians over ``rounds`` of back-to-back
    samples, dense and 2:4 in alternation (which goes first alternates too); the speed-up is the
    median of each round's own ratio, so a drift of the host or GPU clock across rounds cancels.
    """
    d, s = [], []
    for r in range(rounds):
        if r % 2:
            s.append(sample(sparse, device, iters))
            d.append(sample(dense, device, iters))
        else:
            d.append(sample(dense, device, iters))
            s.append(sample(sparse, device, iters))
    ratios = [td / ts for td, ts in zip(d, s)]
    return statistics.median(d), statistics.median(s), statistics.median(ratios)


def layer_savings(model, m: int) -> float:
    """Seconds per call the decoder Linears would save for M rows if each ran the fastest path
    its dispatcher measured alone (dense time - fastest time, summed): with the whole model's
    dense time t, t / (t - saved) bounds what the 2:4 layers can give end to end (Amdahl)."""
    saved = 0.0
    for module in model.modules():
        if isinstance(module, SparseLinear):
            key = module.dispatcher.key(module.layer_key, module.device, m)
            seconds = module.dispatcher.decisions.get(key, {}).get("seconds", {})
            if "dense" in seconds:
                saved += seconds["dense"] - min(seconds.values())
    return saved


def relative_error(a, b) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


def rows_of(label: str, tokens: int) -> int:
    """M, the rows a decoder Linear sees: every token of a prefill, one per sequence in decode."""
    return tokens if label.startswith("prefill") else int(label.split()[1])


def choices_text(model, m: int) -> str:
    """How many decoder Linears run each path for M rows ("nn.Linear": unwrapped, dense)."""
    picked: dict[str, int] = {}
    for fqn, module in model.named_modules():
        if isinstance(module, SparseLinear):
            name = module.choices.get(m_bucket(m), "-")
        elif is_decoder_linear(module, fqn):
            name = "nn.Linear"
        else:
            continue
        picked[name] = picked.get(name, 0) + 1
    return ", ".join(f"{n} x{c}" for n, c in sorted(picked.items()))


def run_model(name, spec, args, device, dtype, began, rows, notes):
    context = args.context
    positions = max(context, 8192) if device.type == "cuda" else context
    kind, dense = build(name, spec, device, dtype, positions)
    vocab = VOCAB if kind == "llama" or device.type == "cuda" else 256
    prefill = [(1, 1024), (8, 1024)] if device.type == "cuda" else [(1, 16)]
    if device.type == "cuda" and spec[1] == 4096:
        prefill.append((1, 8192))
    decode = [1, 8] if device.type == "cuda" else [1]
    work = workloads(kind, dense, device, prefill, decode, context, vocab)
    if args.workloads:
        work = {label: w for label, w in work.items() if label in args.workloads}
    dispatchers = {}
    for mode in args.modes:
        if time.perf_counter() - began > args.budget:
            rows += [f"| {name} | {w} | {mode} | not measured (time budget) ||||||" for w in work]
            continue
        serve = "graph" if mode == "compile" else mode
        timer = default_timer if serve == "eager" or device.type != "cuda" else graph_timer
        if serve not in dispatchers:  # made after the last one wrote the disk cache: shares it
            dispatchers[serve] = Dispatcher(timer=timer, cache_file=args.cache)
        sparse = copy.deepcopy(dense)
        labels = list(work)
        t0 = time.perf_counter()
        report = st.sparsify_(
            sparse, "2:4", filter_fn=is_decoder_linear, dispatcher=dispatchers[serve],
            paths=None if device.type == "cuda" else ["dense", "nm_reference"],
            workload=work[labels[0]][1], serve=serve if device.type == "cuda" else "eager",
        )  # fmt: skip
        verifications = {labels[0]: report.verification}
        for label in labels[1:]:
            verifications[label] = verify_(
                sparse, work[label][1], serve if device.type == "cuda" else "eager",
                target_seconds=args.verify_seconds,
            )  # fmt: skip
        saved = {
            label: layer_savings(sparse, rows_of(label, tokens))
            for label, (tokens, _) in work.items()
        }
        unwrapped = unwrap_dense_(sparse)  # dense for every workload: plain nn.Linear again
        notes.append(
            f"{name} {mode}: sparsified and verified in {time.perf_counter() - t0:.0f} s; "
            f"{len(unwrapped)} decoder Linears dense for every workload, unwrapped"
        )
        for label, (tokens, fn) in work.items():
            if time.perf_counter() - began > args.budget:
                rows.append(f"| {name} | {label} | {mode} | not measured (time budget) ||||||")
                continue
            try:
                with torch.no_grad():
                    ref, got = fn(dense), fn(sparse)
                    err = relative_error(got, ref)
                    calls = [prepared(mode, model, fn) for model in (dense, sparse)]
                    td, ts, speedup = paired(*calls, device, args.iters, args.rounds)
            except Exception as exc:  # keep measuring the rest; the row says what failed
                traceback.print_exc()
                rows.append(f"| {name} | {label} | {mode} | failed: {type(exc).__name__} ||||||")
                continue
            d, s = tokens / td, tokens / ts
            v = verifications[label]
            kept = f"{len(v.reverted)} pinned dense" if v.reverted else "as chosen"
            m = rows_of(label, tokens)
            bound = td / max(td - saved[label], 1e-12)
            rows.append(
                f"| {name} | {label} | {mode} | {d:,.0f} | {s:,.0f} | {speedup:.2f}x | "
                f"{v.speedup:.2f}x ({kept}) | {bound:.2f}x | {choices_text(sparse, m)} | {err:.1e} |"
            )
            print(rows[-1], f"# {time.perf_counter() - began:.0f} s", flush=True)
        del sparse
        torch.cuda.empty_cache() if device.type == "cuda" else None


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--models", default="llama4096,llama2048,own4096")
    ap.add_argument("--modes", default="eager,graph,compile")
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    ap.add_argument("--context", type=int, default=None, help="decode KV cache length (1024)")
    ap.add_argument("--iters", type=int, default=None)
    ap.add_argument("--budget", type=float, default=480.0, help="seconds before rows are skipped")
    ap.add_argument("--verify-seconds", type=float, default=0.3)
    ap.add_argument("--rounds", type=int, default=9, help="paired timing rounds per row")
    ap.add_argument("--cache", default=None, help="dispatcher cache file (default: none)")
    ap.add_argument(
        "--layers", type=int, default=None, help="decoder layers of every model (default: table)"
    )
    ap.add_argument(
        "--workloads", default=None, help='comma list to keep, e.g. "decode 1 x 1,prefill 1 x 8192"'
    )
    args = ap.parse_args()
    # One process compiles the same step function for a dense and a 2:4 copy of each model and
    # workload: past torch's default of 8 recompiles a code object, dynamo falls back to eager
    # and the compile rows would time eager runs.
    torch._dynamo.config.recompile_limit = 64
    args.workloads = [w.strip() for w in args.workloads.split(",")] if args.workloads else None
    args.modes = [m for m in args.modes.split(",") if m]
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    if not cuda:
        args.modes = [m for m in args.modes if m == "eager"]
    args.context = args.context or (1024 if cuda else 64)
    args.iters = args.iters or (10 if cuda else 2)
    dtype = torch.bfloat16 if cuda else torch.float32
    table = MODELS if cuda else CPU_MODELS
    began = time.perf_counter()
    env = f"{torch.cuda.get_device_name()}, torch {torch.__version__}" if cuda else "CPU"
    print(f"{env}, {time.strftime('%Y-%m-%d')}, {dtype}")
    rows, notes = [], []
    for name in args.models.split(","):
        if name not in table:
            continue
        try:
            spec = table[name] if args.layers is None else (*table[name][:5], args.layers)
            run_model(name, spec, args, device, dtype, began, rows, notes)
        except Exception:  # a model that cannot be built here (transformers missing, memory)
            traceback.print_exc()
            rows.append(f"| {name} | - | - | failed to build or sparsify ||||||")
        torch.cuda.empty_cache() if cuda else None
    print(
        "\n| model | workload | mode | dense tok/s | 2:4 tok/s | speed-up | verify_ (whole model) "
        "| layer bound | 2:4 layer choices | rel. error |"
    )
    print("|---|---|---|---:|---:|---:|---|---:|---|---:|")
    print("\n".join(rows))
    print("\n" + "\n".join(f"- {n}" for n in notes))
    print(f"\n({time.perf_counter() - began:.0f} s)")


if __name__ == "__main__":
    main()
