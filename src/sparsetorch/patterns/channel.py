"""Channel sparsity: whole output channels (rows of Linear, filters of conv, embeddings of
Embedding) are kept or pruned. A channel's score is the sum of its weights' scores."""

from __future__ import annotations

import torch

from sparsetorch.patterns.base import Pattern, check_mask, float_scores
from sparsetorch.patterns.block import as_matrix_shape, sum_finite


class Channel(Pattern):
    name = "channel"

    def unit_size(self, shape: torch.Size | tuple[int, ...]) -> int:
        return as_matrix_shape(shape)[1]

    def unit_scores(self, scores: torch.Tensor) -> torch.Tensor:
        self.check(scores.shape)
        rows = float_scores(scores).reshape(as_matrix_shape(scores.shape))  # (out, rest)
        return sum_finite(rows, (1,))  # (out,)

    def expand(self, unit_mask: torch.Tensor, shape: torch.Size | tuple[int, ...]) -> torch.Tensor:
        rows, cols = as_matrix_shape(shape)
        return unit_mask.reshape(rows, 1).expand(rows, cols).reshape(shape)

    def is_valid(self, mask: torch.Tensor) -> bool:
        check_mask(mask)
        if mask.dim() == 0:
            return False
        rows = mask.reshape(as_matrix_shape(mask.shape))
        return bool((rows.any(1) == rows.all(1)).all())
