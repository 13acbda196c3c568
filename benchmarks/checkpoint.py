"""Compressed sparse checkpoints: bytes and save/load time against dense safetensors.

    python benchmarks/checkpoint.py sizes            # the bytes table (~4M-parameter MLP)
    python benchmarks/checkpoint.py speed            # save/load time, ~100M parameters at 90%
    python benchmarks/checkpoint.py sizes speed      # both (the docs/benchmarks.md command)

Reference for bytes: a dense safetensors file of the same model's plain weights (no masks;
the harsher comparison: a dense file of the masked state_dict would also hold the bool masks).
Reference for time: ``safetensors.torch.save_file`` of the plain weights (or of the masked
state_dict), and ``load_file`` + ``model.load_state_dict`` into a plain model (or, to end in the
same masked model as ours, ``apply_masks`` + ``load_state_dict``). Paths alternate within each
repeat, after one warm-up round; medians of ``--repeats`` wall and process-CPU seconds are shown
(CPU time, kernel time included, is what to read on a machine shared with other jobs; with the
default ``--threads 1`` it is also what wall time would be on an idle machine).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from sparsetorch.checkpoint import load, save
from sparsetorch.checkpoint.header import read_header, sparsetorch_metadata
from sparsetorch.masking import apply_masks, masks_from_state_dict, remove_masks
from sparsetorch.models import build
from sparsetorch.pruning import prune

SPARSITIES = (0.5, 0.8, 0.9, 0.95, 0.99)


def mlp(width: int, depth: int, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(*[nn.Linear(width, width) for _ in range(depth)])


def masks_for(model: nn.Module, pattern: str, sparsity: float) -> dict[str, torch.Tensor]:
    """Magnitude masks of every Linear weight in ``pattern`` (exact per-layer counts)."""
    out = {}
    for name, p in model.named_parameters():
        if not name.endswith("weight"):
            continue
        score = p.detach().abs()
        if pattern == "2:4":
            top = score.reshape(-1, 4).topk(2, dim=1).indices
            mask = torch.zeros_like(score.reshape(-1, 4), dtype=torch.bool)
            mask.scatter_(1, top, True)
        elif pattern == "block4x4":
            rows, cols = score.shape
            tiles = score.reshape(rows // 4, 4, cols // 4, 4).sum((1, 3))
            keep = round(tiles.numel() * (1 - sparsity))
            grid = torch.zeros(tiles.numel(), dtype=torch.bool)
            grid[tiles.reshape(-1).topk(keep).indices] = True
            mask = grid.reshape(tiles.shape).repeat_interleave(4, 0).repeat_interleave(4, 1)
        else:
            keep = round(score.numel() * (1 - sparsity))
            mask = torch.zeros(score.numel(), dtype=torch.bool)
            mask[score.reshape(-1).topk(keep).indices] = True
        out[name] = mask.reshape(p.shape)
    return out


def read_metadata(path: Path) -> tuple[object, dict]:
    header = read_header(path)
    return header, sparsetorch_metadata(header)


def plain_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict().items() if not k.endswith("_mask")}


def sizes(tmp: Path) -> None:
    rows = []
    cases = [("unstructured", dt, s) for dt in ("float32", "float16") for s in SPARSITIES]
    cases += [("block4x4", "float32", s) for s in SPARSITIES]
    cases += [("2:4", "float32", 0.5), ("2:4", "float16", 0.5), ("2:4", "bfloat16", 0.5)]
    for pattern, dtype, sparsity in cases:
        model = mlp(1024, 4).to(getattr(torch, dtype))
        apply_masks(model, masks_for(model, pattern, sparsity))
        ours = save(model, tmp / "ours.safetensors").stat().st_size
        save_file(model.state_dict(), str(tmp / "dense_masked.safetensors"))
        with_masks = (tmp / "dense_masked.safetensors").stat().st_size
        save_file(plain_state(model), str(tmp / "dense.safetensors"))
        dense = (tmp / "dense.safetensors").stat().st_size
        itemsize = torch.tensor([], dtype=getattr(torch, dtype)).element_size()
        bound = (1 - sparsity) + 1 / (8 * itemsize)  # values + 1 bit per element
        rows.append(
            f"| {pattern} | {dtype} | {sparsity:.0%} | {ours / dense:.3f}x | {bound:.3f}x | "
            f"{ours / with_masks:.3f}x | {ours:,} | {dense:,} |"
        )
    print("| pattern | dtype | sparsity | ours / dense | values+bitmask bound | "
          "ours / dense with masks | ours (B) | dense (B) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print()
    print("Paper models pruned with st.prune (global magnitude; biases and norms stay dense):")
    print()
    print("| model | pattern | dtype | sparsity of prunable weights | ours / dense | encodings |")
    print("|---|---|---|---|---|---|")
    for name in ("lenet300", "conv6", "resnet20"):
        for pattern, dtype, sparsity in (
            ("unstructured", "float32", 0.9),
            ("2:4", "float16", None),
        ):
            torch.manual_seed(0)
            model = build(name).to(getattr(torch, dtype))
            prune(model, sparsity=sparsity, pattern=pattern)
            ours = save(model, tmp / "ours.safetensors")
            save_file(plain_state(model), str(tmp / "dense.safetensors"))
            ratio = ours.stat().st_size / (tmp / "dense.safetensors").stat().st_size
            _, meta = read_metadata(ours)
            used = sorted({e["encoding"] for e in meta["tensors"].values()} - {"mask_of"})
            shown = "90%" if sparsity else "50%"
            print(f"| {name} | {pattern} | {dtype} | {shown} | {ratio:.3f}x | {', '.join(used)} |")


def speed(tmp: Path, width: int, depth: int, sparsity: float, repeats: int) -> None:
    model = mlp(width, depth)
    apply_masks(model, masks_for(model, "unstructured", sparsity))
    plain, full = plain_state(model), model.state_dict()
    target = mlp(width, depth, seed=1)
    params = sum(p.numel() for p in model.parameters())
    dense, dense_masked, ours = (tmp / f"{n}.safetensors" for n in ("dense", "masked", "ours"))
    cases = {  # name: (reference, ours)
        "save": (lambda: save_file(plain, str(dense)), lambda: save(model, ours)),
        "save, masks included": (
            lambda: save_file(full, str(dense_masked)),
            lambda: save(model, ours),
        ),
        "load into a plain model": (
            lambda: target.load_state_dict(load_file(str(dense))),
            lambda: load(ours, target),
        ),
        "load into a plain model, masks restored": (
            lambda: restore_dense(target, dense_masked),
            lambda: load(ours, target),
        ),
        "load as a state_dict (dense: materialised copies)": (
            lambda: {k: v.clone() for k, v in load_file(str(dense_masked)).items()},
            lambda: load(ours),
        ),
    }
    wall = {(c, i): [] for c in cases for i in (0, 1)}
    cpu = {(c, i): [] for c in cases for i in (0, 1)}
    for repeat in range(repeats + 1):  # the first round warms up and is not counted
        for case, fns in cases.items():
            for i, fn in enumerate(fns):
                remove_masks(target)
                gc.collect()
                start, start_cpu = time.perf_counter(), time.process_time()
                fn()
                if repeat:
                    wall[case, i].append(time.perf_counter() - start)
                    cpu[case, i].append(time.process_time() - start_cpu)
    load(ours, target)
    for k in full:
        assert torch.equal(target.state_dict()[k], full[k]), k
    size = ours.stat().st_size / dense.stat().st_size
    print(f"{params / 1e6:.1f}M parameters, {sparsity:.0%} unstructured float32, file "
          f"{size:.3f}x of dense; median of {repeats}, wall seconds (process CPU seconds):")  # fmt: skip
    print("| operation | dense safetensors | ours | ours / dense (wall) | (CPU) |")
    print("|---|---|---|---|---|")
    for case in cases:
        (rw, ow), (rc, oc) = ([statistics.median(d[case, i]) for i in (0, 1)] for d in (wall, cpu))
        print(f"| {case} | {rw:.3f} ({rc:.3f}) | {ow:.3f} ({oc:.3f}) | {ow / rw:.2f}x | "
              f"{oc / rc:.2f}x |")  # fmt: skip


def restore_dense(model: nn.Module, path: Path) -> None:
    """What restoring a masked model from a dense safetensors file takes."""
    state = load_file(str(path))
    apply_masks(model, masks_from_state_dict(state))
    model.load_state_dict(state)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", nargs="+", choices=("sizes", "speed"))
    parser.add_argument("--width", type=int, default=4096, help="speed: Linear width")
    parser.add_argument("--depth", type=int, default=6, help="speed: number of Linear layers")
    parser.add_argument("--sparsity", type=float, default=0.9, help="speed: sparsity")
    parser.add_argument("--repeats", type=int, default=5, help="speed: repeats (median shown)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (load_state_dict copies, masked_fill in apply_masks)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s)\n")
    with tempfile.TemporaryDirectory() as tmp:
        if "sizes" in args.what:
            sizes(Path(tmp))
        if "speed" in args.what:
            speed(Path(tmp), args.width, args.depth, args.sparsity, args.repeats)


if __name__ == "__main__":
    main()
