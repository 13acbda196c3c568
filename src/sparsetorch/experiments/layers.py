"""Per-layer density of a model's sparsifiable weights: the default prunable set (Linear, Conv,
Embedding weights) plus any other parameter that carries a mask. Density counts exact
nonzeros, so it is right whether or not masks are attached."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from sparsetorch.masking import named_masked, prunable_parameters
from sparsetorch.sharding.dtensor import local, selector_for


def sparsifiable(model: nn.Module) -> list[tuple[str, torch.Tensor]]:
    found = {full: module._parameters[name] for full, module, name in prunable_parameters(model)}
    for full, module, name in named_masked(model):
        found.setdefault(full, module._parameters[name])
    return list(found.items())


def count_nonzero(param: torch.Tensor) -> int:
    """Exact nonzeros (of the whole tensor, also for an FSDP2-sharded one)."""
    return selector_for(param).count(local(param.detach()) != 0)


def layer_densities(model: nn.Module) -> dict[str, dict[str, Any]]:
    """``{param name: {"shape", "numel", "nnz", "density"}}`` in module order."""
    out = {}
    for name, param in sparsifiable(model):
        nnz = count_nonzero(param)
        out[name] = {
            "shape": list(param.shape),
            "numel": param.numel(),
            "nnz": nnz,
            "density": nnz / max(param.numel(), 1),
        }
    return out


def global_sparsity(model: nn.Module) -> float:
    """1 - nonzeros / total over the sparsifiable weights (0.0 when there are none)."""
    total = nnz = 0
    for _, param in sparsifiable(model):
        total += param.numel()
        nnz += count_nonzero(param)
    return 1.0 - nnz / total if total else 0.0
