"""What SET and RigL share: a sparse start, then every ``delta_t`` steps drop the weakest active
connections and grow as many new ones, with a drop fraction decaying as
alpha_t = alpha / 2 (1 + cos(pi t / T_end)) and no update from ``T_end`` on
(``sparsetorch.schedules.CosineDecay``). The two methods differ only in the grow score
(random for SET, dense-gradient magnitude for RigL) and in when the update happens."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from sparsetorch.algorithms.during.base import (
    DynamicSparsity,
    check_fraction,
    check_int,
    make_generator,
)
from sparsetorch.algorithms.during.topology import update_mask
from sparsetorch.masks import SUFFIX
from sparsetorch.masks.prunable import FilterFn
from sparsetorch.patterns import get as get_pattern
from sparsetorch.prune import prune
from sparsetorch.schedules import CosineDecay


def default_t_end(total_steps: int) -> int:
    """75% of training, the RigL paper's T_end."""
    return max(1, int(0.75 * total_steps))


class DropAndGrow(DynamicSparsity):
    """Base of SET and RigL. Subclasses define :meth:`grow_scores`."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        sparsity: float = 0.9,
        distribution: str = "erk",
        *,
        total_steps: int,
        delta_t: int = 100,
        alpha: float = 0.3,
        t_end: int | None = None,
        pattern: str = "unstructured",
        exclude: list[str] | None = None,
        filter_fn: FilterFn | None = None,
        seed: int | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(
            model,
            optimizer,
            total_steps=total_steps,
            exclude=exclude,
            filter_fn=filter_fn,
            generator=make_generator(seed, generator),
        )
        self.sparsity = check_fraction("sparsity", sparsity, closed=False)
        self.delta_t = check_int("delta_t", delta_t, 1)
        self.alpha = check_fraction("alpha", alpha)
        if t_end is None:
            t_end = default_t_end(self.total_steps)
        self.t_end = check_int("t_end", t_end, 1, self.total_steps)
        self.pattern = get_pattern(pattern)
        self.distribution = distribution
        # alpha = 0: no topology update at all (static sparse training)
        self.schedule = (
            CosineDecay(self.alpha, self.t_end, self.delta_t) if self.alpha > 0 else None
        )
        self.request_gradients(self.t)  # the schedule exists now (RigL: dense-gradient steps)
        if not self.existing_masks(self.pattern):
            prune(
                model,
                sparsity=self.sparsity,
                pattern=self.pattern,
                criterion="random",
                distribution=distribution,
                generator=self.generator,
                exclude=self.exclude,
                filter_fn=filter_fn,
            )

    def drop_fraction(self, t: int) -> float:
        """alpha_t at step t (0 when no update happens at t)."""
        if self.schedule is None or not self.schedule.is_update_step(t):
            return 0.0
        return self.schedule.fraction_at(t)

    def is_update_step(self, t: int) -> bool:
        return self.schedule is not None and self.schedule.is_update_step(t)

    def grow_scores(self, param: torch.Tensor) -> torch.Tensor:
        """Score of every connection for growing (higher grows first)."""
        raise NotImplementedError

    @torch.no_grad()
    def update_topology(self, t: int) -> dict[str, Any]:
        """Drop and grow in every layer (counts kept), then log the update."""
        fraction = self.drop_fraction(t)
        before = self.masks()
        for _, module, name in self.targets:
            param = module._parameters[name]
            mask = module._buffers[name + SUFFIX]
            drop_scores = param.detach().abs()
            new = update_mask(self.pattern, mask, drop_scores, self.grow_scores(param), fraction)
            self.set_mask(module, name, new)
        return self.record(t, before, drop_fraction=fraction)
