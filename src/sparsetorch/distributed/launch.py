"""The process group of ``sparsetorch train --distributed``: created from the environment
that ``torchrun`` sets (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT), with a
timeout on every collective. NCCL on CUDA (one GPU per rank: ``cuda:LOCAL_RANK``), gloo on
the CPU."""

from __future__ import annotations

import os
from datetime import timedelta

import torch

from sparsetorch._checks import is_real

ENVIRONMENT = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
DEFAULT_TIMEOUT_S = 600.0


def check_launched() -> None:
    """ValueError unless this process was launched by torchrun (its environment is set)."""
    missing = [name for name in ENVIRONMENT if name not in os.environ]
    if missing:
        raise ValueError(
            f"--distributed needs the environment torchrun sets ({', '.join(missing)} not "
            "set): launch with torchrun --nproc_per_node N -m sparsetorch train ... "
            "--distributed ddp|fsdp"
        )


def init_from_env(device: str | torch.device, timeout_s: float = DEFAULT_TIMEOUT_S) -> torch.device:
    """Initialise the default process group (unless it is already) and return this rank's
    device. Raises ValueError when not launched by torchrun."""
    import torch.distributed as dist

    check_launched()
    if not is_real(timeout_s) or not timeout_s > 0:
        raise ValueError(f"--dist-timeout must be a number of seconds > 0, got {timeout_s!r}")
    device = torch.device(device)
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(
            "nccl" if device.type == "cuda" else "gloo", timeout=timedelta(seconds=timeout_s)
        )
    return device


def finish() -> None:
    """Destroy the default process group if there is one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def is_rank_zero() -> bool:
    import torch.distributed as dist

    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


__all__ = ["DEFAULT_TIMEOUT_S", "ENVIRONMENT", "finish", "init_from_env", "is_rank_zero"]
