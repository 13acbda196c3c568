"""Global: one score threshold across all layers (``selection.global_topk_masks``); a layer's
density is whatever share of the top scores it holds. Scores must be comparable across layers
(magnitude is the classic case: global magnitude pruning, as in IMP)."""

from __future__ import annotations

from collections.abc import Mapping

from sparsetorch.distributions.base import Distribution, Shape


class Global(Distribution):
    name = "global"
    is_global = True

    def densities(
        self,
        shapes: Mapping[str, Shape],
        density: float,
        max_density: Mapping[str, float] | None = None,
    ) -> dict[str, float]:
        raise ValueError(
            "the 'global' distribution has no per-layer densities: they follow from the "
            "scores (sparsetorch.selection.global_topk_masks); prune() handles it"
        )
