"""One-shot pruning of a trained causal language model: bits per character after magnitude,
Wanda and SparseGPT at 50% unstructured, 2:4 and 4:8.

The model is the newest model of a ``sparsetorch train`` run of the project's character-level
Transformer on the text dataset (the Python standard library's source, bytes as tokens). Its
Linear layers inside the blocks are pruned (token and position embeddings and the output head
stay dense, as in both papers), calibrated on N sequences drawn (seed 0) from the training
split; bits per character are measured on the first ``--eval-sequences`` sequences of the test
split: the mean next-byte cross-entropy in bits.

    sparsetorch train --model transformer --dataset text --data-option context=64 \\
        --model-option d_model=64 --model-option n_layers=4 --model-option n_heads=4 \\
        --batch-size 32 --steps 2000 --lr 3e-3 --optimizer adamw --lr-schedule cosine \\
        --warmup-steps 100 --eval-every 250 --seed 0 --threads 1 --out runs/
    python benchmarks/oneshot_lm.py --run-dir runs/transformer-dense-<hash> --sizes 16 64 256
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import sparsetorch as st
from sparsetorch.data import load
from sparsetorch.experiments.reporting import model_from_run
from sparsetorch.experiments.rundir import RunDir

TARGETS = {"50%": {"sparsity": 0.5}, "2:4": {"pattern": "2:4"}, "4:8": {"pattern": "4:8"}}


@torch.no_grad()
def bits_per_char(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int) -> float:
    model.eval()
    total = 0.0
    for i in range(0, len(x), batch):
        logits = model(x[i : i + batch])  # (B, T, 256)
        total += float(
            F.cross_entropy(logits.flatten(0, 1), y[i : i + batch].flatten(), reduction="sum")
        )
    return total / y.numel() / math.log(2)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=[16, 64, 256],
        help="calibration sequences drawn from the training split",
    )
    parser.add_argument("--methods", nargs="+", default=["magnitude", "wanda", "sparsegpt"])
    parser.add_argument("--targets", nargs="+", default=list(TARGETS), choices=list(TARGETS))
    parser.add_argument("--eval-sequences", type=int, default=1000)
    parser.add_argument(
        "--sequential",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="--no-sequential: every block calibrated on dense activations",
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args()  # fmt: skip
    torch.set_num_threads(args.threads)
    run = RunDir(args.run_dir)
    dataset_hp = run.hparams().dataset
    data = load("text", data_dir=dataset_hp.data_dir, seed=dataset_hp.split_seed,
                **dataset_hp.options)  # fmt: skip
    dense_model, step = model_from_run(args.run_dir)
    test_x, test_y = data.test.x[: args.eval_sequences], data.test.y[: args.eval_sequences]
    dense = bits_per_char(dense_model, test_x, test_y, args.batch_size)
    params = sum(p.numel() for p in dense_model.parameters())
    print(f"dense model: {params} parameters, step {step}, test bpc {dense:.4f} "
          f"on {test_y.numel()} characters", flush=True)  # fmt: skip
    order = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(0))
    rows = [dict(target="dense", method="-", calibration=None, bpc=dense, seconds=0.0)]
    for target in args.targets:
        for method in args.methods:
            for size in [None] if method == "magnitude" else args.sizes:
                model = copy.deepcopy(dense_model)
                cal = None
                if size is not None:
                    cal = list(torch.split(data.train.x[order[:size]], args.batch_size))
                start = time.perf_counter()
                st.oneshot(model, method, cal, sequential=args.sequential, **TARGETS[target])
                seconds = time.perf_counter() - start
                bpc = bits_per_char(model, test_x, test_y, args.batch_size)
                rows.append(dict(target=target, method=method, calibration=size, bpc=bpc,
                                 seconds=seconds))  # fmt: skip
                print(f"{target:>4} {method:>9} {size or '-':>4}: bpc {bpc:.4f} "
                      f"({seconds:.1f} s)", flush=True)  # fmt: skip
    print()
    print("| pattern | method | calibration sequences | test bits per char | vs dense | prune s |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['target']} | {r['method']} | {r['calibration'] or '-'} | {r['bpc']:.4f} | "
              f"{r['bpc'] - dense:+.4f} | {r['seconds']:.1f} |")  # fmt: skip
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
