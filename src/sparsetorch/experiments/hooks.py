"""The plug-in points of the training loop. Sparsity algorithms are hooks, never special cases
in the loop.

Order within one training step (``step`` counts optimizer steps from 0)::

    loss = hook.before_backward(ctx, step, loss)  # if not None; e.g. adds a regulariser
    loss.backward()
    hook.after_backward(ctx, step)   # param.grad is the dense gradient of the effective weight
    optimizer.step()                 # or, for the one hook with steps_optimizer = True,
                                     # hook.optimizer_step(ctx, step): a dynamic-sparsity
                                     # algorithm's own step (RigL updates instead of stepping)
    hook.after_step(ctx, step)

Masks are enforced by the optimizer step hooks of ``sparsetorch.masking``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn


@dataclass
class TrainContext:
    model: nn.Module
    optimizer: torch.optim.Optimizer
    data: Any  # sparsetorch.data.Dataset
    total_steps: int
    steps_per_epoch: int
    seed: int
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    hparams: Any = None  # the run's hparams dataclass
    # a sample batch (x, y) from the training set, for algorithms that score on data (SNIP...)
    sample_batch: tuple[torch.Tensor, torch.Tensor] | None = None
    # extra per-step metrics a hook wants logged (merged into metrics.jsonl at eval steps)
    logs: dict[str, Any] = field(default_factory=dict)
    # the run directory (None for in-memory runs), for hooks that keep files of their own
    run_dir: Path | None = None
    # the run's torch.amp.GradScaler (precision fp16; None otherwise): a hook that steps the
    # optimizer steps through it (the dynamic methods pass it to ``algo.step(scaler=...)``)
    scaler: Any = None


class TrainHook:
    """Base class: override what you need. ``state_dict``/``load_state_dict`` make a hook
    resumable (the runner saves them with its checkpoints)."""

    def on_train_start(self, ctx: TrainContext) -> None:
        """Before the first step (also after resuming: then ``load_state_dict`` ran first)."""

    def before_backward(
        self, ctx: TrainContext, step: int, loss: torch.Tensor
    ) -> torch.Tensor | None:
        """After the forward pass; return a new loss (e.g. plus a penalty) or None to keep it.
        Hooks are chained in order, each seeing the previous one's loss."""

    def after_backward(self, ctx: TrainContext, step: int) -> None:
        """After ``loss.backward()``, before ``optimizer.step()``."""

    #: True when :meth:`optimizer_step` replaces the loop's ``optimizer.step()`` (one hook at
    #: most: an algorithm that decides, step by step, whether and how the optimizer steps)
    steps_optimizer: bool = False

    def optimizer_step(self, ctx: TrainContext, step: int) -> None:
        """The training step's optimizer update, for a hook with ``steps_optimizer``."""
        raise NotImplementedError

    def after_step(self, ctx: TrainContext, step: int) -> None:
        """After ``optimizer.step()``."""

    def on_train_end(self, ctx: TrainContext) -> None:
        """After the last step."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            raise ValueError(f"{type(self).__name__} has no state to load, got {sorted(state)}")
