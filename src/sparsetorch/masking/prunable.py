"""Which parameters are prunable by default: the weights of Linear, Conv and Embedding layers.

Biases, norm parameters and everything else are not. A weight shared by several modules (tied
embeddings) is listed once, under its first owner, and is excluded when any of its names is
(by ``exclude`` or ``filter_fn``). ``exclude`` (module or parameter names,
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
    owners = _owners(model)
    found = []
    for module_name, module in model.named_modules():
        weight = module._parameters.get("weight")
        if not isinstance(module, PRUNABLE_TYPES) or weight is None:
            continue
        names = owners[id(weight)]
        if names[0][0] != module_name:  # tied: listed once, under its first owner
            continue
        full = f"{module_name}.weight" if module_name else "weight"
        if any(_excluded(name, owner, excluded, filter_fn) for name, owner in names):
            continue
        found.append((full, module, "weight"))
    known = {name for name, _ in model.named_modules()} | {
        name for name, _ in model.named_parameters(remove_duplicate=False)
    }
    unknown = excluded - known
    if unknown:
        raise ValueError(f"exclude names no module or parameter of the model: {sorted(unknown)}")
    return found


def _owners(model: nn.Module) -> dict[int, list[tuple[str, nn.Module]]]:
    """{id(weight): [(module name, module), ...]} over every prunable module holding it, in
    ``named_modules`` order (a tied weight has several)."""
    owners: dict[int, list[tuple[str, nn.Module]]] = {}
    for name, module in model.named_modules():
        weight = module._parameters.get("weight")
        if isinstance(module, PRUNABLE_TYPES) and weight is not None:
            owners.setdefault(id(weight), []).append((name, module))
    return owners


def _excluded(
    module_name: str, module: nn.Module, excluded: set[str], filter_fn: FilterFn | None
) -> bool:
    """Whether one owner's name of a weight is excluded: a tied weight is excluded when any
    of its names is (``exclude=["head"]`` and ``exclude=["emb"]`` both leave it dense)."""
    full = f"{module_name}.weight" if module_name else "weight"
    if module_name in excluded or full in excluded:
        return True
    return filter_fn is not None and not filter_fn(module, module_name)
