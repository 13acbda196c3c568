"""Layer-wise magnitude pruning, the baseline of both one-shot papers: keep the largest |W|
of each layer (unstructured) or of each group of M inputs (N:M). Needs no calibration data."""

from __future__ import annotations

import torch

from sparsetorch.post_training.method import OneShotMethod, Target
from sparsetorch.post_training.statistics import InputStatistics


class Magnitude(OneShotMethod):
    name = "magnitude"
    statistics = None

    def prune(
        self, weight: torch.Tensor, stats: InputStatistics | None, target: Target
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        return None, target.pattern.mask(weight.abs(), target.density)  # (out, in)
