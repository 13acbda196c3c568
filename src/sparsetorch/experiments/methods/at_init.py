"""The at-initialisation methods in the runner: prune once in ``on_train_start`` and keep the
mask fixed (static sparse training). After a resume the masks come back with the checkpoint and
nothing is recomputed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from sparsetorch.algorithms.at_init import (
    GraSPConfig,
    RandomConfig,
    SNIPConfig,
    SynFlowConfig,
    grasp,
    random_prune,
    snip,
    synflow,
)
from sparsetorch.algorithms.at_init.base import mask_seed
from sparsetorch.algorithms.config import AlgorithmConfig
from sparsetorch.experiments.hooks import TrainContext, TrainHook
from sparsetorch.experiments.methods import register

Prune = Callable[[TrainContext, Any], None]


class AtInitHook(TrainHook):
    """Prunes once, in ``on_train_start``, with ``prune(ctx, config)``."""

    def __init__(self, config: AlgorithmConfig, prune: Prune) -> None:
        self.config = config
        self.prune = prune
        self.done = False

    def on_train_start(self, ctx: TrainContext) -> None:
        if not self.done:
            self.prune(ctx, self.config)
            self.done = True

    def state_dict(self) -> dict[str, Any]:
        return {"done": self.done}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if set(state) != {"done"}:
            raise ValueError(f"{type(self).__name__} state must be {{'done': bool}}, got {state}")
        self.done = bool(state["done"])


def scoring_batches(ctx: TrainContext, n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``ctx.sample_batch`` for one batch; for ``n`` > 1, ``n`` batches of its size drawn
    without replacement from the training split (seeded by the run's seed)."""
    if ctx.sample_batch is None:
        raise ValueError("this method scores on data, but the training context has no sample_batch")
    if n == 1:
        return [ctx.sample_batch]
    size = len(ctx.sample_batch[0])
    train = ctx.data.train
    if n * size > len(train):
        raise ValueError(
            f"batches={n} of {size} examples need {n * size} training examples, the split has "
            f"{len(train)}"
        )
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(mask_seed(ctx.seed)))
    return [
        (train.x[idx].to(ctx.device), train.y[idx].to(ctx.device))
        for idx in order[: n * size].view(n, size)
    ]


def _axes(cfg: AlgorithmConfig) -> dict[str, Any]:
    return {"pattern": cfg.pattern, "distribution": cfg.distribution}


def _snip(ctx: TrainContext, cfg: SNIPConfig) -> None:
    snip(ctx.model, scoring_batches(ctx, cfg.batches), cfg.sparsity, **_axes(cfg))


def _grasp(ctx: TrainContext, cfg: GraSPConfig) -> None:
    batches = scoring_batches(ctx, cfg.batches)
    grasp(ctx.model, batches, cfg.sparsity, temperature=cfg.temperature, **_axes(cfg))


def _synflow(ctx: TrainContext, cfg: SynFlowConfig) -> None:
    if ctx.sample_batch is not None and not ctx.sample_batch[0].is_floating_point():
        raise ValueError(
            "synflow feeds an all-ones float input; this dataset's inputs are "
            f"{ctx.sample_batch[0].dtype} (token ids), which it cannot linearise"
        )
    synflow(ctx.model, ctx.data.input_shape, cfg.sparsity, iterations=cfg.iterations, **_axes(cfg))


def _random(ctx: TrainContext, cfg: RandomConfig) -> None:
    random_prune(ctx.model, cfg.sparsity, generator=mask_seed(ctx.seed), **_axes(cfg))


for _name, _prune in (
    ("snip", _snip),
    ("grasp", _grasp),
    ("synflow", _synflow),
    ("random", _random),
):
    register(_name, lambda cfg, prune=_prune: AtInitHook(cfg, prune))
