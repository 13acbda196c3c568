"""``--sparse-kernels``: the runner hook that puts the model's Linear layers on the sparse CPU
kernels (``st.accelerate_``) once the method's masks exist.

It runs after the method's hooks at the start of training (RigL/SET draw their masks there;
GMP attaches its masks later, and accelerated layers follow them). Results equal masked dense
training to float rounding. ``report`` keeps what ``accelerate_`` did.
"""

from __future__ import annotations

import torch

from sparsetorch.experiments.hooks import TrainContext, TrainHook


def check_sparse_kernels(device: torch.device, distributed: str | None) -> None:
    """One clear error for a combination the sparse CPU kernels cannot serve."""
    if device.type != "cpu":
        raise ValueError(
            f"--sparse-kernels needs --device cpu (the kernels are CPU kernels), got {device}"
        )
    if distributed == "fsdp":
        raise ValueError("--sparse-kernels does not support --distributed fsdp (sharded weights)")


class SparseKernelsHook(TrainHook):
    def __init__(self) -> None:
        self.report = None  # sparsetorch.accelerate.AccelerateReport, after the start

    def on_train_start(self, ctx: TrainContext) -> None:
        from sparsetorch.accelerate import accelerate_

        self.report = accelerate_(ctx.model)
