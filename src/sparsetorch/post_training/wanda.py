"""Wanda: pruning by weights and activations (Sun, Liu, Bair & Kolter 2023, "A Simple and
Effective Pruning Approach for Large Language Models").

For a layer with weight W (out, in) and calibration inputs X (tokens, in):

    S_ij = |W_ij| * ||X_j||_2                 # the score of weight (i, j)
    unstructured: in every output row i, prune the lowest s * in scores
    N:M:          in every group of M consecutive inputs of a row, keep the N highest

No weight update: the kept weights keep their values.
"""

from __future__ import annotations

import torch

from sparsetorch.post_training.method import OneShotMethod, Target, keep_per_row
from sparsetorch.post_training.statistics import InputStatistics, SquaredNorms


class Wanda(OneShotMethod):
    name = "wanda"
    statistics = SquaredNorms

    def prune(
        self, weight: torch.Tensor, stats: InputStatistics | None, target: Target
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        assert isinstance(stats, SquaredNorms)
        scores = weight.abs() * stats.norms().to(weight.dtype).unsqueeze(0)  # (out, in)
        if target.nm is not None:
            return None, target.nm.mask(scores)  # per group of M along in
        return None, keep_per_row(scores, target.density)  # per output row
