"""Sparsity and density of a tensor, a sparse format, or a model.

density d = nonzeros / total, sparsity s = 1 - d (the formula "s = ||w||_0 / total", as sometimes written, counts
nonzeros, which is the density). Zero means ``== 0`` (both signs); NaN counts as nonzero.

For an ``nn.Module`` the count runs over its prunable weights by default: the weights the
registry of prunable kinds covers (``sparsetorch.masking.prunable_parameters``: Linear, Conv,
ConvTranspose, transformers' Conv1D, MultiheadAttention's input projection and Embedding
weights, and any kind you register), the weights ``st.prune`` prunes and ``st.report`` lists.
Biases and norm parameters are never pruned, so counting them would understate the sparsity;
a weight of 2+ dims that no kind covers (``masking.uncovered_weights``, listed under
``st.report``'s table) is not counted either. ``params="all"`` counts every parameter. Both are
global ratios: layers weigh by their size. A weight that a mask keeps but that happens to be
exactly zero counts as zero.
"""

from __future__ import annotations

import torch
from torch import nn

from sparsetorch._checks import check_not_meta
from sparsetorch.formats import SparseFormat

PARAMS = ("prunable", "all")


def nonzeros_and_total(
    x: torch.Tensor | SparseFormat | nn.Module, params: str = "prunable"
) -> tuple[int, int]:
    """(nonzero count, element count) of ``x``; see the module docstring for modules."""
    if params not in PARAMS:
        raise ValueError(f"params must be one of {', '.join(PARAMS)}, got {params!r}")
    check_not_meta(x.values if isinstance(x, SparseFormat) else x, "x")
    if isinstance(x, nn.Module):
        return _module_counts(x, params)
    if isinstance(x, SparseFormat):
        return int(torch.count_nonzero(x.values)), x.numel
    if isinstance(x, torch.Tensor):
        if x.layout != torch.strided:
            raise TypeError(f"x must be a dense tensor, got layout {x.layout} (use .to_dense())")
        return int(torch.count_nonzero(x)), x.numel()
    raise TypeError(
        f"x must be a torch.Tensor, a sparsetorch format or an nn.Module, got {type(x).__name__}"
    )


def _module_counts(model: nn.Module, params: str) -> tuple[int, int]:
    if params == "all":
        tensors = list(model.parameters())
    else:
        from sparsetorch.masking import prunable_parameters

        tensors = [module._parameters[name] for _, module, name in prunable_parameters(model)]
    if not tensors:
        raise ValueError(f"the model has no {params} parameters to measure")
    nonzero = sum(int(torch.count_nonzero(t.detach())) for t in tensors)
    return nonzero, sum(t.numel() for t in tensors)


def _counts(x: torch.Tensor | SparseFormat | nn.Module, params: str) -> tuple[int, int]:
    nonzero, total = nonzeros_and_total(x, params)
    if total == 0:
        raise ValueError("density/sparsity of x is undefined: it has no elements")
    return nonzero, total


def density(x: torch.Tensor | SparseFormat | nn.Module, params: str = "prunable") -> float:
    """Fraction of nonzero entries. For a module, ``params="prunable"`` (default) counts the
    prunable weights (see the module docstring: what ``st.prune`` prunes and ``st.report``
    lists), ``"all"`` every parameter."""
    nonzero, total = _counts(x, params)
    return nonzero / total


def sparsity(x: torch.Tensor | SparseFormat | nn.Module, params: str = "prunable") -> float:
    """Fraction of zero entries, ``1 - density(x, params)`` (computed exactly as zeros/total).
    For a module, ``params="prunable"`` (default) counts the prunable weights only: the weights
    ``st.prune`` prunes and ``st.report`` lists (biases, norms and weights no prunable kind
    covers are left out); ``params="all"`` counts every parameter."""
    nonzero, total = _counts(x, params)
    return (total - nonzero) / total
