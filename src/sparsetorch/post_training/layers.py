"""The layers one-shot pruning prunes: the matrix layers inside the blocks.

A matrix layer is called on ``(..., in)`` inputs with a 2-D weight: ``nn.Linear`` (and its
subclasses) and the ``Conv1D`` of Hugging Face transformers (GPT-2), a Linear with its weight
stored transposed, ``(in, out)``. How their weight is laid out (its reduction axis) comes from
the one registry of prunable kinds (``sparsetorch.masking.kind_of``); a type registered there as
kept dense (``register_prunable(MyLinear, params=())``) is left alone here too. transformers is
never imported: its ``Conv1D`` is matched by class path.

Every algorithm sees a weight as ``(out, in)`` rows, the layout of the papers, with N:M groups
running along ``in``; :meth:`Layer.rows` and :meth:`Layer.write` translate. Linear layers
inside ``nn.MultiheadAttention`` are left out: that module reads their weights without calling
them, so their inputs are never seen.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from sparsetorch.masking import attach_mask
from sparsetorch.masking.kinds import is_matrix_layer
from sparsetorch.masking.prunable import kind_of

FilterFn = Callable[[nn.Module, str], bool]  # (module, fully qualified name) -> include?
PARAM = "weight"  # the pruned parameter of a matrix layer


def _in_dim(module: nn.Module) -> int | None:
    """The reduction axis of a matrix layer's weight, from the prunable-kind registry; None
    when the layer is not pruned (not a matrix layer, registered as kept dense, no 2-D
    weight)."""
    if not is_matrix_layer(module):
        return None
    kind = kind_of(module)
    weight = module._parameters.get(PARAM)
    if kind is None or PARAM not in kind.params or weight is None or weight.dim() != 2:
        return None
    return kind.in_dim


@dataclass(frozen=True)
class Layer:
    fqn: str  # fully qualified module name in the model
    module: nn.Module
    in_dim: int  # the weight's reduction axis: 1 for Linear (out, in), 0 for Conv1D (in, out)

    @property
    def weight(self) -> torch.Tensor:
        return self.module._parameters[PARAM]

    def rows(self) -> torch.Tensor:
        """The weight as ``(out, in)`` (a view)."""
        w = self.weight.detach()
        return w if self.in_dim == 1 else w.t()

    def write(self, rows: torch.Tensor | None, keep: torch.Tensor) -> None:
        """Store new ``(out, in)`` weights (None: keep the current ones) and attach the mask
        ``keep`` (bool ``(out, in)``, True = kept); pruned weights become exact zeros."""
        if self.in_dim == 0:
            keep = keep.t()
            rows = None if rows is None else rows.t()
        if rows is not None:
            with torch.no_grad():
                self.weight.copy_(rows)
        attach_mask(self.module, PARAM, keep.contiguous())


def block_layers(block_name: str, block: nn.Module, filter_fn: FilterFn | None) -> list[Layer]:
    """The prunable layers of one block, in ``named_modules`` order, narrowed by ``filter_fn``."""
    inside_mha = {
        id(m)
        for mha in block.modules()
        if isinstance(mha, nn.MultiheadAttention)
        for m in mha.modules()
        if m is not mha
    }
    prefix = f"{block_name}." if block_name else ""
    found = []
    for name, module in block.named_modules():
        in_dim = _in_dim(module)
        if in_dim is None or id(module) in inside_mha:
            continue
        fqn = (prefix + name).rstrip(".")
        if filter_fn is not None and not filter_fn(module, fqn):
            continue
        found.append(Layer(fqn, module, in_dim))
    return found
