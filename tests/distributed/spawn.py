"""Run a function on N spawned ranks (gloo, CPU) and collect what each returns.

Each rank: one torch thread, a gloo (CPU) or NCCL (one GPU per rank) process group with a
short timeout, ``fn(rank, world, *args)``; its return value (or the exception it raised, as ``("error", type name,
message)``) is saved with ``torch.save`` and read back by the parent. A rank that has not
finished by ``timeout`` fails the call instead of hanging the test run.
"""

from __future__ import annotations

import importlib
import os
import socket
import traceback
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.multiprocessing as mp

PG_TIMEOUT_S = 60


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(
    target: str, rank: int, world: int, port: int, out: str, args: tuple, backend: str
) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    if backend == "nccl":
        os.environ.setdefault("NCCL_NVLS_ENABLE", "0")
        torch.cuda.set_device(rank)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    module, _, name = target.rpartition(".")
    fn = getattr(importlib.import_module(module), name)
    dist.init_process_group(
        backend, rank=rank, world_size=world, timeout=timedelta(seconds=PG_TIMEOUT_S)
    )
    try:
        result: Any = fn(rank, world, *args)
    except BaseException as exc:  # reported to the parent
        result = ("error", type(exc).__name__, f"{exc}\n{traceback.format_exc()}")
    torch.save(result, Path(out) / f"rank{rank}.pt")
    dist.destroy_process_group()


def run_ranks(
    fn: Callable, world: int, out: Path, *args: Any, timeout: float = 300, backend: str = "gloo"
) -> list:
    """``fn`` (a module-level function) on ``world`` ranks; the per-rank results. With
    ``backend="nccl"`` rank r runs on ``cuda:r``."""
    ctx = mp.get_context("spawn")
    target = f"{fn.__module__}.{fn.__qualname__}"
    port = free_port()
    out.mkdir(parents=True, exist_ok=True)
    procs = [
        ctx.Process(target=_entry, args=(target, r, world, port, str(out), args, backend))
        for r in range(world)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout)
    alive = [r for r, p in enumerate(procs) if p.is_alive()]
    for p in procs:
        if p.is_alive():
            p.kill()
            p.join()
    if alive:
        raise AssertionError(f"ranks {alive} did not finish within {timeout} s")
    results = []
    for r, p in enumerate(procs):
        file = out / f"rank{r}.pt"
        if not file.is_file():
            raise AssertionError(f"rank {r} exited with code {p.exitcode} and no result")
        results.append(torch.load(file, weights_only=False))
    return results
