"""The layers one-shot pruning prunes: the Linear layers inside the blocks.

Also the ``Conv1D`` of Hugging Face transformers (GPT-2), a Linear with its weight stored
transposed, ``(in, out)``: its reduction axis is dim 0. transformers is never imported here:
when it is not loaded, no model can hold its ``Conv1D``.

Every algorithm sees a weight as ``(out, in)`` rows, the layout of the papers, with N:M groups
running along ``in``; :meth:`Layer.rows` and :meth:`Layer.write` translate. Linear layers
inside ``nn.MultiheadAttention`` are left out: that module reads their weights without calling
them, so their inputs are never seen.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from sparsetorch.masking import attach_mask

FilterFn = Callable[[nn.Module, str], bool]  # (module, fully qualified name) -> include?


@dataclass(frozen=True)
class LayerKind:
    param: str  # the pruned parameter
    in_dim: int  # its reduction (input) axis


def layer_kinds() -> dict[type[nn.Module], LayerKind]:
    """Prunable layer types -> how their weight is laid out."""
    kinds = {nn.Linear: LayerKind("weight", 1)}
    hf = sys.modules.get("transformers.pytorch_utils")
    conv1d = getattr(hf, "Conv1D", None)
    if conv1d is not None:
        kinds[conv1d] = LayerKind("weight", 0)
    return kinds


def _kind(module: nn.Module, kinds: dict[type[nn.Module], LayerKind]) -> LayerKind | None:
    for cls in type(module).__mro__:
        if cls in kinds:
            return kinds[cls]
    return None


@dataclass(frozen=True)
class Layer:
    fqn: str  # fully qualified module name in the model
    module: nn.Module
    kind: LayerKind

    @property
    def weight(self) -> torch.Tensor:
        return self.module._parameters[self.kind.param]

    def rows(self) -> torch.Tensor:
        """The weight as ``(out, in)`` (a view)."""
        w = self.weight.detach()
        return w if self.kind.in_dim == 1 else w.t()

    def write(self, rows: torch.Tensor | None, keep: torch.Tensor) -> None:
        """Store new ``(out, in)`` weights (None: keep the current ones) and attach the mask
        ``keep`` (bool ``(out, in)``, True = kept); pruned weights become exact zeros."""
        if self.kind.in_dim == 0:
            keep = keep.t()
            rows = None if rows is None else rows.t()
        if rows is not None:
            with torch.no_grad():
                self.weight.copy_(rows)
        attach_mask(self.module, self.kind.param, keep.contiguous())


def block_layers(block_name: str, block: nn.Module, filter_fn: FilterFn | None) -> list[Layer]:
    """The prunable layers of one block, in ``named_modules`` order, narrowed by ``filter_fn``."""
    kinds = layer_kinds()
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
        kind = _kind(module, kinds)
        if kind is None or id(module) in inside_mha or kind.param not in module._parameters:
            continue
        fqn = (prefix + name).rstrip(".")
        if filter_fn is not None and not filter_fn(module, fqn):
            continue
        found.append(Layer(fqn, module, kind))
    return found
