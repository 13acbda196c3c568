"""Unstructured sparsity: any weight may be pruned; units are single weights."""

from __future__ import annotations

import torch

from sparsetorch.patterns.base import Pattern, check_mask, float_scores


class Unstructured(Pattern):
    name = "unstructured"

    def unit_scores(self, scores: torch.Tensor) -> torch.Tensor:
        return float_scores(scores)

    def expand(self, unit_mask: torch.Tensor, shape: torch.Size | tuple[int, ...]) -> torch.Tensor:
        return unit_mask.reshape(shape)

    def is_valid(self, mask: torch.Tensor) -> bool:
        check_mask(mask)
        return True
