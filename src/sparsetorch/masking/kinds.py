"""The built-in prunable kinds (the table in ``masking/prunable.py``) and their MAC counts.

MACs are those of the weight product of one call, biases and activations not counted; an
input's ``numel`` counts every token of every example (batch-first or not, batched or not).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from sparsetorch.masking.prunable import register_prunable


def _arg(args: tuple, kwargs: dict, index: int, name: str) -> Any:
    return args[index] if len(args) > index else kwargs[name]


def linear_macs(module: nn.Linear, name: str, args: tuple, kwargs: dict, output: Any) -> int:
    """rows x in x out: every input row times the (out, in) weight."""
    return _arg(args, kwargs, 0, "input").numel() * module.weight.shape[0]


def conv_macs(module: nn.Module, name: str, args: tuple, kwargs: dict, output: Any) -> int:
    """outputs x in/groups x prod(kernel): every output element reads one filter."""
    return output.numel() * module.weight[0].numel()


def conv_transpose_macs(module: nn.Module, name: str, args: tuple, kwargs: dict, out: Any) -> int:
    """inputs x out/groups x prod(kernel): every input element is scattered through one
    filter slice (weight ``(in, out/groups, *k)``)."""
    return _arg(args, kwargs, 0, "input").numel() * module.weight[0].numel()


def hf_conv1d_macs(module: nn.Module, name: str, args: tuple, kwargs: dict, output: Any) -> int:
    """rows x in x out for transformers' Conv1D (``x @ weight``, weight ``(in, out)``)."""
    return _arg(args, kwargs, 0, "x").numel() * module.weight.shape[1]


def lookup_macs(module: nn.Module, name: str, args: tuple, kwargs: dict, output: Any) -> int:
    return 0  # an embedding reads rows, it multiplies nothing


_MHA_INPUTS = {
    "q_proj_weight": (0, "query"),
    "k_proj_weight": (1, "key"),
    "v_proj_weight": (2, "value"),
}


def mha_macs(
    module: nn.MultiheadAttention, name: str, args: tuple, kwargs: dict, output: Any
) -> int:
    """The projections: query, key and value tokens x their features x embed_dim
    (``in_proj_weight`` packs the three; separate ``q/k/v_proj_weight`` count one each), and
    ``out_proj.weight``, which it reads without calling it: query tokens x embed_dim^2."""
    if name == "out_proj.weight":
        return _arg(args, kwargs, 0, "query").numel() * module.embed_dim
    inputs = _MHA_INPUTS.values() if name == "in_proj_weight" else [_MHA_INPUTS[name]]
    return sum(_arg(args, kwargs, i, key).numel() for i, key in inputs) * module.embed_dim


_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CONV_TRANSPOSE = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
# transformers' Conv1D (GPT-2, GPT-J's predecessors, ...): matched by path, never imported
HF_CONV1D = ("transformers.pytorch_utils.Conv1D", "transformers.modeling_utils.Conv1D")


def is_hf_conv1d(module: nn.Module) -> bool:
    """transformers' ``Conv1D`` or a subclass (``x @ weight + bias``, weight ``(in, out)``),
    matched by class path so transformers is never imported."""
    return any(f"{c.__module__}.{c.__qualname__}" in HF_CONV1D for c in type(module).__mro__)


def is_matrix_layer(module: nn.Module) -> bool:
    """A layer called on ``(..., in)`` inputs with a 2-D weight: ``nn.Linear`` (and its
    subclasses) or transformers' ``Conv1D`` (matched by class path, never imported)."""
    return isinstance(module, nn.Linear) or is_hf_conv1d(module)


def register_builtin_kinds() -> None:
    register_prunable(nn.Linear, "weight", 1, linear_macs)
    for conv in _CONV:
        register_prunable(conv, "weight", 1, conv_macs)
    for conv in _CONV_TRANSPOSE:
        register_prunable(conv, "weight", 0, conv_transpose_macs)
    for path in HF_CONV1D:
        register_prunable(path, "weight", 0, hf_conv1d_macs)
    register_prunable(
        nn.MultiheadAttention,
        ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight"),
        1,
        mha_macs,
        reads=("out_proj.weight",),
    )
    register_prunable(nn.Embedding, "weight", 1, lookup_macs)
    register_prunable(nn.EmbeddingBag, "weight", 1, lookup_macs)


register_builtin_kinds()

__all__ = ["HF_CONV1D", "is_hf_conv1d", "is_matrix_layer", "register_builtin_kinds"]
