"""Peak extra memory of ``st.prune`` on real-sized models (CPU), one model per process.

    python benchmarks/prune_memory.py                # print the table
    python benchmarks/prune_memory.py --write        # and replace the "Pruning memory (CPU)"
                                                     # section of docs/benchmarks.md
    python benchmarks/prune_memory.py --only gpt2-medium:stream

Models are built from their configs with random weights (Hugging Face transformers, no
download): GPT-2 small and medium in float32, and a 1.1B Llama (TinyLlama's shapes: 22 layers,
hidden 2048, vocab 32000) in bfloat16. Each measurement runs in a fresh process: build the
model, note the resident memory (``VmRSS``), reset the kernel's peak counter (``VmHWM``, by
writing 5 to ``/proc/self/clear_refs``), prune, read the peak. "Extra" is peak - before; the
masks ``st.prune`` leaves behind (one bool per pruned weight) are part of it and are shown on
their own. ``one-pass`` forces the path every model took before streaming (all scores held,
``torch.kthvalue`` over their concatenation: ``pruning.STREAM_ABOVE`` set above the model's
size); ``stream`` is the default path of models of more than ``STREAM_ABOVE`` units.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

from _docs import write_section

ROOT = Path(__file__).resolve().parents[1]
SECTION = "Pruning memory (CPU)"

# name -> (config builder source, dtype)
MODELS = {
    "gpt2": "transformers.GPT2Config(bos_token_id=0, eos_token_id=0)",
    "gpt2-medium": "transformers.GPT2Config(n_layer=24, n_embd=1024, n_head=16)",
    "llama-1.1b": (
        "transformers.LlamaConfig(vocab_size=32000, hidden_size=2048, intermediate_size=5632,"
        " num_hidden_layers=22, num_attention_heads=32, num_key_value_heads=4,"
        " tie_word_embeddings=False)"
    ),
}
DTYPES = {"gpt2": "float32", "gpt2-medium": "float32", "llama-1.1b": "bfloat16"}
CASES = [
    ("gpt2", "one-pass", "unstructured"),
    ("gpt2", "stream", "unstructured"),
    ("gpt2-medium", "one-pass", "unstructured"),
    ("gpt2-medium", "stream", "unstructured"),
    ("gpt2-medium", "stream", "2:4"),
    ("llama-1.1b", "stream", "unstructured"),
    ("llama-1.1b", "stream", "2:4"),
]

NOTES = """`one-pass` is the path of models below `pruning.STREAM_ABOVE` (16M units) and the path
every model took before streaming: a float32 score per weight, their concatenation, and
`torch.kthvalue`'s own value and int64 index copies. `stream` holds the masks it attaches (one
bool per weight: 0.25x a float32 model, 0.5x a bfloat16 one) plus one layer's scores and a
chunk of sort keys. Times include the global floor's extra passes (at random initialisation
GPT-2's residual projections fall below it). Peaks of the same row vary between runs by what
the allocator keeps of freed memory."""

CHILD = r"""
import gc, json, re, sys, time
sys.path.insert(0, {src!r})
import torch, transformers
import sparsetorch as st
from sparsetorch import pruning

def status():
    text = open("/proc/self/status").read()
    return {{k: int(re.search(k + r":\s+(\d+) kB", text).group(1)) * 1024 for k in ("VmRSS", "VmHWM")}}

torch.set_num_threads(1)
transformers.logging.set_verbosity_error()
torch.manual_seed(0)
dtype = getattr(torch, {dtype!r})
torch.set_default_dtype(dtype)
model = transformers.AutoModelForCausalLM.from_config({config})
torch.set_default_dtype(torch.float32)
params = {{id(p): p for p in model.parameters()}}
nbytes = sum(p.numel() * p.element_size() for p in params.values())
count = sum(p.numel() for p in params.values())
if {path!r} == "one-pass":
    pruning.STREAM_ABOVE = 1 << 62
gc.collect()
before = status()["VmRSS"]
open("/proc/self/clear_refs", "w").write("5")
start = time.perf_counter()
pattern = {pattern!r}
st.prune(model, None if pattern == "2:4" else 0.5, pattern=pattern)
seconds = time.perf_counter() - start
peak = status()["VmHWM"]
masks = sum(m.numel() for m in st.masks(model).values())
print(json.dumps({{"params": count, "model_bytes": nbytes, "extra": peak - before,
                  "mask_bytes": masks, "seconds": seconds, "sparsity": st.sparsity(model)}}))
"""


def measure(name: str, path: str, pattern: str) -> dict:
    code = CHILD.format(
        src=str(ROOT / "src"), dtype=DTYPES[name], config=MODELS[name], path=path, pattern=pattern
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def gib(n: float) -> str:
    return f"{n / 2**30:.2f}"


def table(rows: list[tuple[str, str, str, dict]]) -> str:
    lines = [
        "| model | dtype | params | model GiB | pattern | path | extra peak GiB | x model "
        "| of which masks GiB | time s |",
        "|---|---|---:|---:|---|---|---:|---:|---:|---:|",
    ]
    for name, path, pattern, r in rows:
        lines.append(
            f"| {name} | {DTYPES[name]} | {r['params'] / 1e6:.0f}M | {gib(r['model_bytes'])} "
            f"| {pattern} | {path} | {gib(r['extra'])} | {r['extra'] / r['model_bytes']:.2f} "
            f"| {gib(r['mask_bytes'])} | {r['seconds']:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help="write docs/benchmarks.md")
    parser.add_argument(
        "--only", nargs="+", default=None, help="cases as model:path[:pattern], e.g. gpt2:stream"
    )
    args = parser.parse_args()
    cases = CASES
    if args.only:
        wanted = [tuple([*c.split(":", 2), "unstructured"][:3]) for c in args.only]
        cases = [c for c in CASES if c in wanted]
    rows = []
    for name, path, pattern in cases:
        result = measure(name, path, pattern)
        rows.append((name, path, pattern, result))
        print(name, path, pattern, json.dumps(result), flush=True)
    text = table(rows)
    print(text)
    if args.write:
        import torch

        load = Path("/proc/loadavg").read_text().split()[0]
        section = "\n".join(
            [
                f"## {SECTION}",
                "",
                f"`python benchmarks/prune_memory.py --write` (torch {torch.__version__}, "
                f"{platform.processor() or platform.machine()}, 1 thread, 24 GiB shared with "
                f"other jobs: load average {load}; {time.strftime('%Y-%m-%d')}). "
                "`st.prune(model, 0.5)` (global magnitude) and `st.prune(model, "
                'pattern="2:4")` on models built from their configs with random weights, one '
                "process per row; extra peak = peak resident memory during the call - "
                "resident memory before it (the masks it leaves behind included).",
                "",
                text,
                "",
                NOTES,
            ]
        )
        write_section(SECTION, section, ROOT / "docs" / "benchmarks.md")


if __name__ == "__main__":
    main()
