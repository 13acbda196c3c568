"""SparseGPT (Frantar & Alistarh 2023, "SparseGPT: Massive Language Models Can Be Accurately
Pruned in One-Shot"): optimal brain surgeon row updates through the inverse Hessian.

For a layer with weight W (rows, cols) and H = 2 X^T X / tokens (Algorithm 1 of the paper):

    dead inputs (H_jj = 0): H_jj = 1, W_:j = 0
    H += λ · mean(diag H) · I                     # dampening
    U = Cholesky(H^-1), upper                     # row i of U: the OBS update of column i
    for each block of B columns [i1, i2):         # lazy batch updates
        unstructured: prune the p·rows·B weights of the block with the lowest
                      w^2 / U_jj^2                # adaptive mask selection (B_s = B)
        for each column i of the block:
            N:M: at the first column of a group of M, prune its M-N lowest w^2 / U_jj^2
            q = w_:i with the pruned entries zeroed
            E_:i = (w_:i - q) / U_ii
            W_:,i: -= E_:i · U_i,i:               # update the block's later columns
            w_:i = q
        W_:,i2: -= E · U_[i1:i2),i2:              # then the columns after the block, at once

Every pruned weight's error is spread over the not yet processed weights of its row, so the
layer's output on the calibration inputs, X W^T, changes as little as the mask allows.
"""

from __future__ import annotations

import torch

from sparsetorch._checks import is_int, is_real
from sparsetorch.post_training.method import OneShotMethod, Target
from sparsetorch.post_training.statistics import Hessian, InputStatistics
from sparsetorch.selection import nearest_count, topk_mask


def inverse_hessian_factor(
    hessian: torch.Tensor, dampening: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(U, dead)``: the upper Cholesky factor of the dampened H^-1 ``(cols, cols)``, and the
    bool ``(cols,)`` of dead inputs (H_jj = 0, never active on the calibration data)."""
    h = hessian.clone()
    dead = h.diagonal() == 0  # (cols,)
    h[dead, dead] = 1
    h.diagonal().add_(dampening * h.diagonal().mean())
    lower, info = torch.linalg.cholesky_ex(h)
    if not int(info):
        upper, info = torch.linalg.cholesky_ex(torch.cholesky_inverse(lower), upper=True)
    if int(info):
        raise ValueError(
            f"the Hessian is not positive definite after dampening {dampening} (its Cholesky "
            "factorisation failed): raise dampening or give more calibration data"
        )
    return upper, dead


def _saliency(w: torch.Tensor, u_diag: torch.Tensor) -> torch.Tensor:
    return w.square() / u_diag.square()  # OBS: w^2 / [H^-1]_jj


def sparsegpt(
    weight: torch.Tensor,
    hessian: torch.Tensor,
    target: Target,
    blocksize: int = 128,
    dampening: float = 0.01,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(new weight, keep mask)`` of a weight ``(rows, cols)`` given its Hessian ``(cols,
    cols)``; the weight is not modified."""
    nm = target.nm
    if nm is not None and blocksize % nm.m:
        raise ValueError(f"blocksize ({blocksize}) must be a multiple of M ({nm.m}) for {nm.name}")
    w = weight.clone()  # (rows, cols)
    u, dead = inverse_hessian_factor(hessian.to(w.dtype), dampening)
    w[:, dead] = 0
    rows, cols = w.shape
    pruned = torch.zeros(rows, cols, dtype=torch.bool, device=w.device)
    kept_so_far = 0
    for i1 in range(0, cols, blocksize):
        i2 = min(i1 + blocksize, cols)
        w1 = w[:, i1:i2].clone()  # (rows, B)
        u1 = u[i1:i2, i1:i2]  # (B, B)
        d = u1.diagonal()  # (B,)
        p1 = pruned[:, i1:i2]  # (rows, B) view
        err = torch.zeros_like(w1)  # (rows, B)
        if nm is None:  # adaptive mask selection for the block
            # the blocks' counts add up to the layer's whole count (rounded once, as
            # magnitude rounds it: halves kept), not one rounding per block
            kept = nearest_count(target.density, rows * i2) - kept_so_far
            kept_so_far += kept
            p1.copy_(topk_mask(_saliency(w1, d).neg(), w1.numel() - kept))
        for i in range(i2 - i1):
            if nm is not None and (i1 + i) % nm.m == 0:
                g = min(nm.m, cols - i1 - i)  # the group (partial at the end of a row)
                p1[:, i : i + g] = ~nm.candidates(_saliency(w1[:, i : i + g], d[i : i + g]))
            q = w1[:, i].masked_fill(p1[:, i], 0)  # (rows,)
            err[:, i] = (w1[:, i] - q) / d[i]
            w1[:, i:] -= err[:, i : i + 1] * u1[i : i + 1, i:]  # (rows, 1) x (1, B - i)
            w1[:, i] = q
        w[:, i1:i2] = w1
        w[:, i2:] -= err @ u[i1:i2, i2:]  # the lazy update of the later columns
    return w, ~pruned


class SparseGPT(OneShotMethod):
    """``blocksize``: columns per lazy-update block (and per adaptive mask selection);
    ``dampening``: λ, the fraction of the mean diagonal of H added to its diagonal."""

    name = "sparsegpt"
    statistics = Hessian

    def __init__(self, blocksize: int = 128, dampening: float = 0.01) -> None:
        if not is_int(blocksize) or blocksize < 1:
            raise ValueError(f"blocksize must be an int >= 1, got {blocksize!r}")
        if not is_real(dampening):
            raise TypeError(f"dampening must be a float >= 0, got {dampening!r}")
        if not 0 <= dampening < float("inf"):
            raise ValueError(f"dampening must be a finite float >= 0, got {dampening!r}")
        self.blocksize, self.dampening = int(blocksize), float(dampening)

    def check(self, target: Target) -> None:
        if target.nm is not None and self.blocksize % target.nm.m:
            raise ValueError(
                f"SparseGPT's blocksize ({self.blocksize}) must be a multiple of M "
                f"({target.nm.m}) for pattern {target.nm.name!r}"
            )

    def prune(
        self, weight: torch.Tensor, stats: InputStatistics | None, target: Target
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        assert isinstance(stats, Hessian)
        return sparsegpt(weight, stats.hessian(), target, self.blocksize, self.dampening)

    def __repr__(self) -> str:
        return f"SparseGPT(blocksize={self.blocksize}, dampening={self.dampening})"
