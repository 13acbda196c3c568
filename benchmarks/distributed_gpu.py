"""Distributed RigL throughput: the small Transformer (sparsetorch.models.transformer) with
RigL at 90% (ERK) under DDP or FSDP2 over NCCL, 1 vs N GPUs.

    export NCCL_NVLS_ENABLE=0
    torchrun --nproc_per_node 1 benchmarks/distributed_gpu.py --mode ddp    # 1-GPU baseline
    torchrun --nproc_per_node 2 benchmarks/distributed_gpu.py --mode ddp
    torchrun --nproc_per_node 1 benchmarks/distributed_gpu.py --mode fsdp
    torchrun --nproc_per_node 2 benchmarks/distributed_gpu.py --mode fsdp
    python benchmarks/distributed_gpu.py --mode topk                       # one process

Weak scaling: every GPU trains on ``--batch`` sequences of ``--context`` random tokens per
step, so the global batch grows with the GPUs; throughput = global sequences per second over
the timed steps (after ``--warmup`` untimed ones), RigL's topology updates (every
``--delta-t`` steps: dense-gradient drop/grow with the exact sharded top-k) included. Each
step is timed between two CUDA synchronisations. After every update and at the end the
masks are verified identical on all ranks (``sparsetorch.distributed.verify_masks``, not
timed). Rank 0 prints one markdown row:

| mode | GPUs | device | model | seq/GPU | steps | seq/s | ms/step | update ms | masks |

``--mode topk`` times the exact top-k itself on one device: ``sparsetorch.selection``
(kthvalue) against the radix select the sharded top-k runs (``sharded_topk`` with one
shard, i.e. without communication), on N(0,1) scores, k = 10%.

Without CUDA it runs on the CPU with gloo (a smoke test: tiny sizes, no meaningful timing).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import time

import torch
import torch.distributed as dist
import torch.nn.functional as F

import sparsetorch as st
from sparsetorch.distributed import ddp, fsdp, verify_masks
from sparsetorch.models.transformer import CausalTransformer

VOCAB = 256


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mode", choices=("ddp", "fsdp", "topk"), required=True)
    p.add_argument("--steps", type=int, default=200, help="timed steps")
    p.add_argument("--warmup", type=int, default=20, help="untimed steps first")
    p.add_argument("--batch", type=int, default=64, help="sequences per GPU per step")
    p.add_argument("--context", type=int, default=256, help="tokens per sequence")
    p.add_argument("--d-model", type=int, default=512)
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--sparsity", type=float, default=0.9)
    p.add_argument("--delta-t", type=int, default=50, help="RigL update period")
    return p.parse_args()


def setup() -> torch.device:
    os.environ.setdefault("NCCL_NVLS_ENABLE", "0")
    if torch.cuda.is_available():
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        dist.init_process_group("nccl", device_id=device)
    else:
        device = torch.device("cpu")
        dist.init_process_group("gloo")
    return device


def masks_digest(model: torch.nn.Module) -> str:
    """SHA-256 (12 hex digits) of every mask gathered whole (collective)."""
    h = hashlib.sha256()
    for name, mask in st.masks(model).items():
        whole = mask.full_tensor() if hasattr(mask, "full_tensor") else mask
        h.update(name.encode())
        h.update(whole.cpu().numpy().tobytes())
    return h.hexdigest()[:12]


def train(args: argparse.Namespace, device: torch.device) -> str:
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)  # the same initial model on every rank
    model = CausalTransformer(
        VOCAB, args.context, d_model=args.d_model, n_layers=args.layers, n_heads=args.heads
    ).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    if args.mode == "ddp":
        forward = ddp(model, device_ids=[device] if device.type == "cuda" else None)
    else:
        from torch.distributed.device_mesh import init_device_mesh

        mesh = init_device_mesh(device.type, (world,))
        forward = fsdp(model, mesh=mesh, units=list(model.blocks))
    total = args.warmup + args.steps
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4)
    rigl = st.RigL(
        model, optimizer, sparsity=args.sparsity, total_steps=total, delta_t=args.delta_t
    )
    gen = torch.Generator(device=device).manual_seed(1000 + rank)  # this rank's data
    tokens = torch.randint(0, VOCAB, (args.batch, args.context + 1), generator=gen, device=device)
    x, y = tokens[:, :-1], tokens[:, 1:]
    times, update_times, verified = [], [], 0
    for t in range(total):
        _sync(device)
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(forward(x).reshape(-1, VOCAB), y.reshape(-1)).backward()
        rigl.step()
        _sync(device)
        took = time.perf_counter() - start
        updated = bool(rigl.history) and rigl.history[-1]["step"] == t
        if t >= args.warmup:
            times.append(took)
            if updated:
                update_times.append(took)
        if updated:
            verified += verify_masks(model, where=f"step {t}") > 0
    digest = masks_digest(model)
    verify_masks(model, where="the end")
    seconds = sum(times)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    model_name = (
        f"transformer d{args.d_model} L{args.layers} T{args.context} ({n_params / 1e6:.1f}M)"
    )
    update_ms = f"{1e3 * statistics.mean(update_times):.1f}" if update_times else "-"
    return (
        f"| {args.mode} | {world} | {name} | {model_name} | {args.batch} | {args.steps} | "
        f"{args.batch * world * len(times) / seconds:.1f} | "
        f"{1e3 * seconds / len(times):.2f} | {update_ms} | "
        f"identical ({verified} updates + end), {digest} |"
    )


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_topk(device: torch.device) -> None:
    from sparsetorch.selection import topk_mask
    from sparsetorch.sharding.topk import sharded_topk

    print("| n | selection.topk_mask ms | radix select ms | equal |")
    for n in (1 << 20, 1 << 22, 1 << 24):
        scores = torch.randn(n, device=device, generator=torch.Generator(device).manual_seed(0))
        k = n // 10
        row = []
        for fn in (lambda: topk_mask(scores, k), lambda: sharded_topk([[scores]], [k])[0][0]):
            fn()  # warm-up
            runs = []
            for _ in range(5):
                _sync(device)
                start = time.perf_counter()
                out = fn()
                _sync(device)
                runs.append(time.perf_counter() - start)
            row.append((1e3 * statistics.median(runs), out))
        same = torch.equal(row[0][1], row[1][1])
        print(f"| {n:,} | {row[0][0]:.1f} | {row[1][0]:.1f} | {same} |")


def main() -> None:
    args = parse()
    if args.mode == "topk":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        time_topk(device)
        return
    device = setup()
    try:
        line = train(args, device)
        if dist.get_rank() == 0:
            print(line, flush=True)
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
