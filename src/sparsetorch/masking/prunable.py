"""Which parameters are prunable: one registry of prunable kinds, module type -> kind.

A :class:`PrunableKind` says, for one module type, which of its parameters are pruned, along
which axis the module reduces them (``in_dim``: N:M groups run along it, and patterns see the
weight with that axis as its columns) and how one call of the module counts multiply-accumulates
(``st.report``'s FLOPs). ``st.prune``, every pattern, ``st.report``, ``st.sparsity``,
``sparsify_`` and the checkpoints read it. The built-in kinds (``masking/kinds.py``):

==============================  ====================================  =======  ==============
module                          pruned parameter(s)                   in_dim   MACs of a call
==============================  ====================================  =======  ==============
``nn.Linear`` (and subclasses)  ``weight`` (out, in)                  1        tokens*in*out
``nn.Conv1d/2d/3d``             ``weight`` (out, in/groups, *k)       1        outputs*in/groups*k
``nn.ConvTranspose1d/2d/3d``    ``weight`` (in, out/groups, *k)       0        inputs*out/groups*k
transformers ``Conv1D``         ``weight`` (in, out), GPT-2           0        tokens*in*out
``nn.MultiheadAttention``       ``in_proj_weight`` (3E, E), or        1        q/k/v tokens*in*E
                                ``q/k/v_proj_weight``
``nn.Embedding(Bag)``           ``weight`` (num, dim)                 1        0 (a lookup)
==============================  ====================================  =======  ==============

A module matches the kind of the first class of its MRO that is registered, so subclasses
inherit (MultiheadAttention's ``out_proj`` is a Linear subclass). A kind is registered under a
class or under a dotted class path (``"transformers.pytorch_utils.Conv1D"``), matched against
each class's ``__module__.__qualname__``: a library that is not installed is never imported.

Biases, norm parameters and everything else are not prunable. Any weight of 2+ dims that no
kind covers is *uncovered* (:func:`uncovered_weights`): ``st.report`` lists it and ``st.prune``
warns once; ``register_prunable`` adds a kind (or, with ``params=()``, marks a type as known and
deliberately dense). A weight shared by several modules (tied embeddings) is listed once, under
its first owner, and is excluded when any of its names is (by ``exclude`` or
``filter_fn``). ``exclude`` (module or parameter names, e.g. ``["fc1"]`` or ``["fc1.weight"]``)
and ``filter_fn(module, fqn) -> bool`` (the signature of torchao's ``sparsify_``: the module and
its fully qualified name; True = prune its weights) narrow the default set.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

# (module, its fully qualified name) -> True to include it; one signature everywhere
FilterFn = Callable[[nn.Module, str], bool]
# (module, parameter name, positional args, keyword args, output) -> multiply-accumulates
MacsFn = Callable[[nn.Module, str, tuple, dict, Any], int]


@dataclass(frozen=True)
class PrunableKind:
    """How a module type's parameters are pruned and counted.

    ``params``: the pruned parameters (absent or None ones are skipped; ``()`` = none: the type
    is known and kept dense). ``in_dim``: the reduction (input) axis of those weights: patterns
    see a weight with this axis as dim 1 (``weight.movedim(in_dim, 1)``), so N:M groups run
    along it and ``channel`` keeps whole outputs. ``macs(module, param, args, kwargs, output)``:
    multiply-accumulates of one call for one of the parameters (None: not counted).
    ``reads``: parameters of submodules (relative names) that the module multiplies by without
    calling their module, counted by its ``macs`` too (MultiheadAttention's
    ``out_proj.weight``)."""

    params: tuple[str, ...] = ("weight",)
    in_dim: int = 1
    macs: MacsFn | None = None
    reads: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.params, str) or not all(isinstance(p, str) for p in self.params):
            raise TypeError(f"params must be a tuple of parameter names, got {self.params!r}")
        if isinstance(self.in_dim, bool) or not isinstance(self.in_dim, int) or self.in_dim < 0:
            raise ValueError(f"in_dim must be an int >= 0, got {self.in_dim!r}")
        if self.macs is not None and not callable(self.macs):
            raise TypeError(f"macs must be callable or None, got {self.macs!r}")


Key = type | str
_KINDS: dict[Key, PrunableKind] = {}


def _key(module_type: Key) -> Key:
    if isinstance(module_type, type) and issubclass(module_type, nn.Module):
        return module_type
    if isinstance(module_type, str) and "." in module_type:
        return module_type
    raise TypeError(
        "module_type must be an nn.Module subclass or a dotted class path such as "
        f"'transformers.pytorch_utils.Conv1D', got {module_type!r}"
    )


def register_prunable(
    module_type: Key,
    params: str | Sequence[str] = ("weight",),
    in_dim: int = 1,
    macs: MacsFn | None = None,
    reads: Sequence[str] = (),
) -> PrunableKind | None:
    """Make ``module_type``'s ``params`` prunable everywhere (``st.prune``, patterns, report,
    checkpoints); returns the kind it replaces (or None), so a test or a library can restore it
    with :func:`unregister_prunable` / another call. ``module_type`` is a class or a dotted
    class path (matched without importing it). ``params=()`` marks the type as known and dense:
    its weights are neither pruned nor reported as uncovered."""
    key = _key(module_type)
    names = (params,) if isinstance(params, str) else tuple(params)
    kind = PrunableKind(names, in_dim, macs, tuple(reads))
    old = _KINDS.get(key)
    _KINDS[key] = kind
    return old


def unregister_prunable(module_type: Key) -> PrunableKind | None:
    """Remove the kind registered under ``module_type`` exactly (not its base classes');
    returns it, or None when there was none."""
    return _KINDS.pop(_key(module_type), None)


def registered_kinds() -> dict[Key, PrunableKind]:
    """A copy of the registry: ``{class or dotted class path: kind}``."""
    return dict(_KINDS)


def kind_of(module: nn.Module) -> PrunableKind | None:
    """The kind of ``module``: that of the first class in its MRO registered by class or by
    dotted path; None when no class is."""
    for cls in type(module).__mro__:
        kind = _KINDS.get(cls) or _KINDS.get(f"{cls.__module__}.{cls.__qualname__}")
        if kind is not None:
            return kind
    return None


def in_dim_of(module: nn.Module, name: str) -> int:
    """The reduction axis of ``module.<name>``: its kind's ``in_dim`` when the kind prunes
    ``name``, else 1 (any other parameter, e.g. one masked by hand, is seen as it is)."""
    kind = kind_of(module)
    return kind.in_dim if kind is not None and name in kind.params else 1


def _owned(module: nn.Module, kind: PrunableKind) -> list[str]:
    return [n for n in kind.params if module._parameters.get(n) is not None]


def prunable_parameters(
    model: nn.Module,
    exclude: Iterable[str] | None = None,
    filter_fn: FilterFn | None = None,
) -> list[tuple[str, nn.Module, str]]:
    """(full parameter name, owning module, parameter name) for every prunable weight, in
    ``named_modules`` order (a module's parameters in its kind's order)."""
    if isinstance(exclude, str):
        raise TypeError(f"exclude must be a list of names, got the string {exclude!r}")
    excluded = set(exclude or ())
    owners = _owners(model)
    found = []
    for module_name, module in model.named_modules():
        kind = kind_of(module)
        if kind is None:
            continue
        for name in _owned(module, kind):
            names = owners[id(module._parameters[name])]
            if names[0][0] != module_name:  # tied: listed once, under its first owner
                continue
            full = f"{module_name}.{name}" if module_name else name
            if any(_excluded(*owner, excluded, filter_fn) for owner in names):
                continue
            found.append((full, module, name))
    known = {name for name, _ in model.named_modules()} | {
        name for name, _ in model.named_parameters(remove_duplicate=False)
    }
    unknown = excluded - known
    if unknown:
        raise ValueError(f"exclude names no module or parameter of the model: {sorted(unknown)}")
    return found


def _owners(model: nn.Module) -> dict[int, list[tuple[str, nn.Module, str]]]:
    """{id(parameter): [(module name, module, parameter name), ...]} over every prunable module
    holding it, in ``named_modules`` order (a tied weight has several)."""
    owners: dict[int, list[tuple[str, nn.Module, str]]] = {}
    for module_name, module in model.named_modules():
        kind = kind_of(module)
        if kind is not None:
            for name in _owned(module, kind):
                owners.setdefault(id(module._parameters[name]), []).append(
                    (module_name, module, name)
                )
    return owners


def _excluded(
    module_name: str,
    module: nn.Module,
    name: str,
    excluded: set[str],
    filter_fn: FilterFn | None,
) -> bool:
    """Whether one owner's name of a parameter is excluded: a tied weight is excluded when any
    of its names is (``exclude=["head"]`` and ``exclude=["emb"]`` both leave it dense)."""
    full = f"{module_name}.{name}" if module_name else name
    if module_name in excluded or full in excluded:
        return True
    return filter_fn is not None and not filter_fn(module, module_name)


def uncovered_weights(model: nn.Module) -> list[tuple[str, torch.Size]]:
    """(full name, shape) of every parameter of 2+ dims that no prunable kind covers (listed
    once, tied ones under their first name): weights ``st.prune`` cannot reach, such as a
    ViT's position embedding ``nn.Parameter``, or the weights of a custom layer type until it
    is registered with :func:`register_prunable`."""
    covered: set[int] = set()
    for module in model.modules():
        kind = kind_of(module)
        if kind is not None:
            covered.update(id(module._parameters[n]) for n in _owned(module, kind))
        if kind is not None and not kind.params:  # known and deliberately dense
            covered.update(id(p) for p in module.parameters(recurse=False))
    return [
        (name, param.shape)
        for name, param in model.named_parameters()
        if param.dim() >= 2 and id(param) not in covered
    ]
