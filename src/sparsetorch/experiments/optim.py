"""Optimizers and learning-rate schedules by name.

The learning rate is a pure function of the step (:func:`lr_at`), set on every parameter group
before each update: there is no scheduler state to save, and a resumed run gets exactly the
rates of an uninterrupted one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch

from sparsetorch._registry import Registry
from sparsetorch.experiments.hparams import TrainingHparams

OPTIMIZERS: Registry[torch.optim.Optimizer] = Registry("optimizer")
LR_SCHEDULES: Registry[Callable[[int, int], float]] = Registry("lr_schedule")


@OPTIMIZERS.register("sgd")
def _sgd(params: Iterable, hp: TrainingHparams) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=hp.lr, weight_decay=hp.weight_decay)


@OPTIMIZERS.register("momentum")
def _momentum(params: Iterable, hp: TrainingHparams) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay)


@OPTIMIZERS.register("adam")
def _adam(params: Iterable, hp: TrainingHparams) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=hp.lr, weight_decay=hp.weight_decay)


@OPTIMIZERS.register("adamw")
def _adamw(params: Iterable, hp: TrainingHparams) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=hp.lr, weight_decay=hp.weight_decay)


def build_optimizer(params: Iterable, hp: TrainingHparams) -> torch.optim.Optimizer:
    return OPTIMIZERS.build(hp.optimizer, params=params, hp=hp)


# A schedule maps (step, total_steps) to a factor of the base learning rate.
@LR_SCHEDULES.register("constant")
def _constant(hp: TrainingHparams) -> Callable[[int, int], float]:
    return lambda step, total: 1.0


@LR_SCHEDULES.register("step")
def _step(hp: TrainingHparams) -> Callable[[int, int], float]:
    return lambda step, total: hp.gamma ** sum(step >= m for m in hp.milestones)


@LR_SCHEDULES.register("cosine")
def _cosine(hp: TrainingHparams) -> Callable[[int, int], float]:
    return lambda step, total: 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))


def lr_at(hp: TrainingHparams, step: int, total_steps: int) -> float:
    """The learning rate of update ``step`` (0-based): base x schedule x linear warmup
    ((step + 1) / warmup_steps during the first warmup_steps updates)."""
    factor = LR_SCHEDULES.build(hp.lr_schedule, hp=hp)(step, total_steps)
    if step < hp.warmup_steps:
        factor *= (step + 1) / hp.warmup_steps
    return hp.lr * factor
