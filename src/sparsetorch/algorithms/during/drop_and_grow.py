"""What SET and RigL share: a sparse start, then every ``delta_t`` steps drop the weakest active
connections and grow as many new ones, with a drop fraction given by the ``schedule`` setting
(``"cosine"``: alpha_t = alpha / 2 (1 + cos(pi t / T_end)); ``"constant"``: alpha) and no update
from ``T_end`` on. The two methods differ only in the grow score
(random for SET, dense-gradient magnitude for RigL) and in when the update happens."""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn

from sparsetorch._warnings import user_stacklevel
from sparsetorch.algorithms.config import DropAndGrowConfig, build_config
from sparsetorch.algorithms.during.base import DynamicSparsity, make_generator
from sparsetorch.algorithms.during.topology import update_mask
from sparsetorch.masking import SUFFIX, get_mask, in_dim_of
from sparsetorch.masking.prunable import FilterFn
from sparsetorch.patterns import get as get_pattern
from sparsetorch.pruning import prune, warn_partial_groups
from sparsetorch.schedules import fraction_schedule
from sparsetorch.sharding.dtensor import local, selector_for


def default_t_end(total_steps: int) -> int:
    """75% of training, the RigL paper's T_end."""
    return max(1, int(0.75 * total_steps))


class DropAndGrow(DynamicSparsity):
    """Base of SET and RigL. Subclasses set ``Config`` and define :meth:`grow_scores`."""

    Config: type[DropAndGrowConfig] = DropAndGrowConfig

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        config: DropAndGrowConfig | None = None,
        *,
        total_steps: int,
        exclude: list[str] | None = None,
        filter_fn: FilterFn | None = None,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        **settings: Any,
    ) -> None:
        super().__init__(
            model,
            optimizer,
            total_steps=total_steps,
            exclude=exclude,
            filter_fn=filter_fn,
            generator=make_generator(seed, generator),
        )
        self.config = cfg = build_config(self.Config, config, settings)
        if cfg.t_end is not None and cfg.t_end > self.total_steps:
            raise ValueError(f"t_end must be in [1, {self.total_steps}], got {cfg.t_end}")
        self.sparsity, self.delta_t, self.alpha = cfg.sparsity, cfg.delta_t, cfg.alpha
        self.t_end = default_t_end(self.total_steps) if cfg.t_end is None else cfg.t_end
        self.pattern = get_pattern(cfg.pattern)
        self.distribution = cfg.distribution
        # alpha = 0: no topology update at all (static sparse training)
        self.schedule = (
            fraction_schedule(
                cfg.schedule, fraction=self.alpha, end_step=self.t_end, frequency=self.delta_t
            )
            if self.alpha > 0
            else None
        )
        self.request_gradients(self.t)  # the schedule exists now (RigL: dense-gradient steps)
        if not self.existing_masks(self.pattern):
            prune(
                model,
                sparsity=self.sparsity,
                pattern=self.pattern,
                criterion="random",
                distribution=self.distribution,
                generator=self.generator,
                exclude=self.exclude,
                filter_fn=filter_fn,
                min_layer_density=0,
                indivisible="partial",
            )
            warn_partial_groups(self.targets, self.pattern, self.method, stacklevel=4)
        else:
            self._warn_other_sparsity()

    def _warn_other_sparsity(self) -> None:
        """Masks already there are the starting topology, and drop-and-grow keeps their
        counts: say so when they are not at the ``sparsity`` asked for (beyond rounding)."""
        kept = total = 0
        for _, module, name in self.targets:
            mask = get_mask(module, name)
            kept += int(selector_for(mask).count(local(mask)))
            total += mask.numel()
        have = 1.0 - kept / max(total, 1)
        if abs(have - self.sparsity) > max(0.01, len(self.targets) / max(total, 1)):
            warnings.warn(
                f"{self.method}: the model's masks are at sparsity {have:.4f}, not the "
                f"sparsity {self.sparsity} asked for; {self.method} keeps their counts (they "
                "are its starting topology): prune to that sparsity first, or remove the "
                "masks (st.remove_masks) to start from its own random topology",
                UserWarning,
                stacklevel=user_stacklevel(),
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
            pattern = self.pattern.along(in_dim_of(module, name))  # Conv1D: groups along dim 0
            new = update_mask(pattern, mask, drop_scores, self.grow_scores(param), fraction)
            self.set_mask(module, name, new)
        return self.record(t, before, drop_fraction=fraction)
