"""Independent references and small models for the one-shot tests."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from torch import nn

from sparsetorch.selection import nearest_count

HAS_TRANSFORMERS = importlib.util.find_spec("transformers") is not None
needs_transformers = pytest.mark.skipif(
    not HAS_TRANSFORMERS,
    reason="transformers is not installed (pip install sparsetorch[hf])",
)


def correlated_inputs(tokens: int, features: int, seed: int = 0) -> torch.Tensor:
    """(tokens, features) inputs with strongly correlated features and uneven scales, like
    the activations of a trained network."""
    g = torch.Generator().manual_seed(seed)
    latent = torch.randn(tokens, features // 2, generator=g, dtype=torch.float64)
    mix = torch.randn(features // 2, features, generator=g, dtype=torch.float64)
    scale = torch.logspace(-1, 1, features, dtype=torch.float64)
    noise = 0.1 * torch.randn(tokens, features, generator=g, dtype=torch.float64)
    return (latent @ mix + noise) * scale


def naive_sparsegpt(
    weight: torch.Tensor,
    hessian: torch.Tensor,
    sparsity: float | None = None,
    nm: tuple[int, int] | None = None,
    blocksize: int = 128,
    dampening: float = 0.01,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Optimal brain surgeon, column by column, in float64, with explicit inverses of the
    Hessian of the not-yet-processed weights (no Cholesky, no lazy updates).

    Removing weight i of a row from the remaining set F changes the row by
    -w_i / [H_F^-1]_ii * H_F^-1[i, :]; after column i it leaves F whether pruned or kept.
    Mask selection as SparseGPT: unstructured, the lowest w_j^2 / [H_Fj^-1]_jj in each block
    of ``blocksize`` columns (rows x block together, at the block's start; the blocks' counts
    add up to the layer's count rounded once); N:M, the lowest
    in each group of M columns of a row, at the group's start.
    """
    w = weight.detach().to(torch.float64).clone()
    h = hessian.detach().to(torch.float64).clone()
    dead = torch.diag(h) == 0
    for j in torch.nonzero(dead).flatten().tolist():
        h[j, j] = 1.0
    w[:, dead] = 0
    h += dampening * torch.diag(h).mean() * torch.eye(h.shape[0], dtype=torch.float64)
    rows, cols = w.shape
    pruned = torch.zeros(rows, cols, dtype=torch.bool)

    def inv_diag(j: int) -> float:  # [H_F^-1]_jj with F = {j, ..., cols-1}
        return float(torch.linalg.inv(h[j:, j:])[0, 0])

    kept_so_far = 0
    for i in range(cols):
        if nm is None and i % blocksize == 0:
            stop = min(i + blocksize, cols)
            sal = torch.stack([w[:, j] ** 2 / inv_diag(j) for j in range(i, stop)], dim=1)
            # the layer's kept count rounded once (halves kept), spread over the blocks
            kept = nearest_count(1.0 - sparsity, rows * stop) - kept_so_far
            kept_so_far += kept
            k = sal.numel() - kept
            flat = torch.argsort(sal.flatten())[:k]
            block = torch.zeros(sal.numel(), dtype=torch.bool)
            block[flat] = True
            pruned[:, i:stop] = block.view(rows, -1)
        if nm is not None and i % nm[1] == 0:
            n, m = nm
            stop = min(i + m, cols)
            size = stop - i
            keep = -(-n * size // m)  # ceil
            sal = torch.stack([w[:, j] ** 2 / inv_diag(j) for j in range(i, stop)], dim=1)
            order = torch.argsort(sal, dim=1)[:, : size - keep]
            for r in range(rows):
                pruned[r, i + order[r]] = True
        h_inv = torch.linalg.inv(h[i:, i:])  # (cols - i, cols - i)
        removed = torch.where(pruned[:, i], w[:, i], torch.zeros_like(w[:, i]))
        w[:, i:] -= (removed / h_inv[0, 0]).unsqueeze(1) * h_inv[0].unsqueeze(0)
        w[:, i] = torch.where(pruned[:, i], torch.zeros_like(w[:, i]), w[:, i])
    return w, ~pruned


class Block(nn.Module):
    """A residual MLP block: x + fc2(relu(fc1(x)))."""

    def __init__(self, d: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(d, hidden)
        self.fc2 = nn.Linear(hidden, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc2(torch.relu(self.fc1(x)))


class Stack(nn.Module):
    """Embedding-free stack of residual blocks with an input and an output layer."""

    def __init__(self, d: int = 16, hidden: int = 24, depth: int = 3, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.inp = nn.Linear(d, d)
        self.blocks = nn.ModuleList(Block(d, hidden) for _ in range(depth))
        self.out = nn.Linear(d, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.inp(x)
        for block in self.blocks:
            x = block(x)
        return self.out(x)
