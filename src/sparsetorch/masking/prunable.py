"""Which parameters are prunable by default: the weights of Linear, Conv and Embedding layers.

Biases, norm parameters and everything else are not. A weight shared by several modules (tied
embeddings) is listed once, under its first owner. ``exclude`` (module or parameter names,
e.g. ``["fc1"]`` or ``["fc1.weight"]``) and ``filter_fn(module, fqn) -> bool`` (the signature of
torchao's ``sparsify_``: the module and its fully qualified name; True = prune its weight)
narrow the default set.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from torch import nn

PRUNABLE_TYPES: tuple[type[nn.Module], ...] = (
    nn.Linear,
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.Embedding,
)

# (module, its fully qualified name) -> True to include it; one signature everywhere
FilterFn = Callable[[nn.Module, str], bool]


def prunable_parameters(
    model: nn.Module,
    exclude: Iterable[str] | None = None,
    filter_fn: FilterFn | None = None,
) -> list[tuple[str, nn.Module, str]]:
    """(full parameter name, owning module, parameter name) for every prunable weight, in
    ``named_modules`` order."""
    if isinstance(exclude, str):
        raise TypeError(f"exclude must be a list of names, got the string {exclude!r}")
    excluded = set(exclude or ())
    found = []
    seen: set[int] = set()
    for module_name, module in model.named_modules():
        weight = module._parameters.get("weight")
        if not isinstance(module, PRUNABLE_TYPES) or weight is None or id(weight) in seen:
            continue
        seen.add(id(weight))
        full = f"{module_name}.weight" if module_name else "weight"
        if module_name in excluded or full in excluded:
            continue
        if filter_fn is not None and not filter_fn(module, module_name):
            continue
        found.append((full, module, "weight"))
    known = {name for name, _ in model.named_modules()} | {n for n, _ in model.named_parameters()}
    unknown = excluded - known
    if unknown:
        raise ValueError(f"exclude names no module or parameter of the model: {sorted(unknown)}")
    return found
