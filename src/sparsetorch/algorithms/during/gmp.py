"""GMP: Zhu & Gupta, "To prune, or not to prune: exploring the efficacy of pruning for model
compression", 2017 (arXiv:1710.01878), gradual magnitude pruning:

    s_t = s_f + (s_i - s_f) (1 - (t - t0) / (n dt))^3,   t in {t0, t0 + dt, ..., t0 + n dt}

At every update step the smallest-magnitude weights are pruned until the layer (or the model,
with the "global" distribution) reaches s_t; pruned weights stay pruned. The schedule is
``sparsetorch.schedules.Gradual``; the pruning is ``sparsetorch.pruning`` (cumulative, any
pattern and distribution). The update follows the optimizer step of iteration t, and runs
also when a GradScaler skipped that step (pruning reads only the weights; a schedule step
lost there would never come back).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from sparsetorch.algorithms.config import GMPConfig, build_config
from sparsetorch.algorithms.during.base import DynamicSparsity, check_int
from sparsetorch.algorithms.during.drop_and_grow import default_t_end
from sparsetorch.distributions import get as get_distribution
from sparsetorch.masking import get_mask, in_dim_of
from sparsetorch.masking.prunable import FilterFn
from sparsetorch.patterns import get as get_pattern
from sparsetorch.pruning import compute_masks, warn_left_dense
from sparsetorch.schedules import sparsity_schedule
from sparsetorch.selection import nearest_count
from sparsetorch.sharding.dtensor import local, selector_for


class GMP(DynamicSparsity):
    """``GMP(model, optimizer, total_steps=T, sparsity=0.9, distribution="uniform",
    delta_t=100, t_start=0, t_end=None (75% of T), initial_sparsity=None, schedule="gradual",
    pattern="unstructured")`` (or ``config=GMPConfig(...)``); call ``gmp.step()`` after
    ``loss.backward()``.

    ``initial_sparsity`` (s_i) defaults to 0, or to 1 - N/M under an N:M pattern (whose masks
    are never denser). From ``t_end`` to the end of training the sparsity stays at
    ``sparsity`` (s_f) and the weights fine-tune.
    """

    method = "gmp"
    Config = GMPConfig
    needs_gradients = False  # magnitudes only: a skipped (overflowed) iteration still prunes

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        config: GMPConfig | None = None,
        *,
        total_steps: int,
        exclude: list[str] | None = None,
        filter_fn: FilterFn | None = None,
        **settings: Any,
    ) -> None:
        super().__init__(
            model, optimizer, total_steps=total_steps, exclude=exclude, filter_fn=filter_fn
        )
        self.config = cfg = build_config(GMPConfig, config, settings)
        self.pattern = get_pattern(cfg.pattern)
        self.distribution = get_distribution(cfg.distribution)
        self.sparsity = cfg.sparsity
        initial_sparsity = cfg.initial_sparsity
        if initial_sparsity is None:
            initial_sparsity = 1.0 - (self.pattern.fixed_density or 1.0)
        least = 1.0 - (self.pattern.fixed_density or 1.0)
        if initial_sparsity < least - 1e-12:
            raise ValueError(
                f"initial_sparsity must be >= {least:g} under pattern {self.pattern.name!r} "
                f"(its masks keep at most {1 - least:g}), got {initial_sparsity}"
            )
        t_end = cfg.t_end
        if t_end is None:
            t_end = min(default_t_end(self.total_steps), self.total_steps - 1)
        self.t_end = check_int("t_end", t_end, 0, self.total_steps - 1)
        self.t_start = check_int("t_start", cfg.t_start, 0, self.t_end)
        self.delta_t = cfg.delta_t
        if initial_sparsity > self.sparsity:
            raise ValueError(
                f"initial_sparsity {initial_sparsity} must be <= sparsity {self.sparsity}"
            )
        self.schedule = sparsity_schedule(
            cfg.schedule,
            initial_sparsity=initial_sparsity,
            final_sparsity=self.sparsity,
            begin_step=self.t_start,
            end_step=self.t_end,
            frequency=self.delta_t,
        )
        self.existing_masks(self.pattern)  # check any starting masks (they stay pruned)
        warn_left_dense(model, self.targets, self.pattern, self.method, stacklevel=3)

    def _magnitude_masks(self, sparsity: float, only: str | None = None) -> dict:
        """``prune``'s cumulative magnitude masks (of one layer with ``only``). The global
        ranking keeps ``st.prune``'s floor per layer (``min_layer_density="auto"``, with its
        warning): one threshold can otherwise empty a layer of small weights and make the
        network's output constant."""
        return compute_masks(
            self.model,
            sparsity=sparsity,
            pattern=self.pattern,
            criterion="magnitude",
            distribution="uniform" if only else self.distribution,
            exclude=[n for n, _, _ in self.targets if n != only] if only else self.exclude,
            filter_fn=None if only else self.filter_fn,
            min_layer_density=0 if only else "auto",
            indivisible="partial",
        )

    def _layerwise_masks(self, density: float) -> dict[str, torch.Tensor]:
        """Every layer pruned on its own to its share of ``density`` (uniform: the same;
        ERK: by shape), rounded per layer to the nearest whole unit, as Zhu & Gupta prune
        layer by layer. Per-layer rounding keeps each layer's count non-increasing along the
        schedule (one rounding over all layers could ask a layer for a weight it pruned)."""
        shapes = {full: m._parameters[n].shape for full, m, n in self.targets}
        pats = {full: self.pattern.along(in_dim_of(m, n)) for full, m, n in self.targets}
        caps = {full: pats[full].max_density(shape) for full, shape in shapes.items()}
        densities = self.distribution.densities(shapes, density, max_density=caps)
        masks = {}
        for full, module, name in self.targets:
            current = get_mask(module, name)
            wanted = nearest_count(densities[full], pats[full].num_units(shapes[full]))
            if current is not None and wanted >= self._kept_units(current, pats[full]):
                masks[full] = current.clone()  # already there (layers never regrow)
            else:
                masks[full] = self._magnitude_masks(1.0 - densities[full], only=full)[full]
        return masks

    def _kept_units(self, mask: torch.Tensor, pattern: Any) -> int:
        # counted over all ranks' rows for an FSDP2-sharded mask
        return selector_for(mask).count(pattern.unit_scores(local(mask).float()) > 0)

    def sparsity_at(self, t: int) -> float:
        """Target sparsity after iteration t."""
        return self.schedule.sparsity_at(t)

    def is_update_step(self, t: int) -> bool:
        return self.schedule.is_update_step(t)

    @torch.no_grad()
    def after_optimizer_step(self, t: int) -> None:
        if not self.is_update_step(t):
            return
        before = self.masks()
        target = self.schedule.sparsity_at(t)
        if self.distribution.is_global:
            masks = self._magnitude_masks(target)
        else:
            masks = self._layerwise_masks(1.0 - target)
        for full, module, name in self.targets:
            self.set_mask(module, name, masks[full])
        self.record(t, before, target_sparsity=target)
