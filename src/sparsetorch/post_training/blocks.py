"""The blocks a model is pruned by, one at a time: its list of repeated layers.

Found generically: among the model's ``nn.ModuleList``/``nn.Sequential`` containers whose
children (at least two) all have the same type, the one holding the most parameters. That is
``model.layers`` of Llama-style models, ``transformer.h`` of GPT-2, ``encoder.layer`` of BERT
and ``blocks`` of ``sparsetorch.models``' Transformer. A model without such a list is one
block, the whole model.

``blocks=`` overrides the search: the name of a container (its children are the blocks), or a
list of module names or modules, in the order the forward pass calls them.

Sequential pruning assumes what the papers' code assumes: block i+1 is called on block i's
output (its first positional argument, or ``hidden_states=``), with the same other arguments
(attention mask, position embeddings) as block 0.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

Block = tuple[str, nn.Module]  # (fully qualified name, module)


def _size(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _repeated(module: nn.Module) -> bool:
    children = list(module.children())
    return (
        isinstance(module, nn.ModuleList | nn.Sequential)
        and len(children) >= 2
        and len({type(c) for c in children}) == 1
    )


def _children(name: str, container: nn.Module) -> list[Block]:
    prefix = f"{name}." if name else ""
    return [(prefix + child, module) for child, module in container.named_children()]


def find_blocks(model: nn.Module) -> list[Block]:
    """The largest list of repeated modules of ``model`` (``[("", model)]`` when none)."""
    best: tuple[int, str, nn.Module] | None = None
    for name, module in model.named_modules():
        if _repeated(module):
            size = _size(module)
            if best is None or size > best[0]:
                best = (size, name, module)
    if best is None:
        return [("", model)]
    return _children(best[1], best[2])


def _fqn(model: nn.Module, module: nn.Module) -> str:
    for name, candidate in model.named_modules():
        if candidate is module:
            return name
    raise ValueError(f"blocks: {type(module).__name__} is not a submodule of the model")


def resolve_blocks(model: nn.Module, blocks: str | Sequence[str | nn.Module] | None) -> list[Block]:
    """The blocks to prune by: found (``blocks=None``) or named by the user."""
    if blocks is None:
        return find_blocks(model)
    if isinstance(blocks, str):
        try:
            container = model.get_submodule(blocks)
        except AttributeError as exc:
            raise ValueError(f"blocks: the model has no module {blocks!r}") from exc
        if isinstance(container, nn.ModuleList | nn.Sequential):
            found = _children(blocks, container)
            if not found:
                raise ValueError(f"blocks: {blocks!r} is an empty container")
            return found
        return [(blocks, container)]
    if not isinstance(blocks, Sequence) or not blocks:
        raise TypeError(
            "blocks must be a module name or a non-empty list of module names or modules, got "
            f"{blocks!r}"
        )
    found = []
    for item in blocks:
        if isinstance(item, str):
            try:
                found.append((item, model.get_submodule(item)))
            except AttributeError as exc:
                raise ValueError(f"blocks: the model has no module {item!r}") from exc
        elif isinstance(item, nn.Module):
            found.append((_fqn(model, item), item))
        else:
            raise TypeError(f"blocks: items must be module names or modules, got {item!r}")
    names = [name for name, _ in found]
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            if i != j and (a == b or a == "" or b.startswith(a + ".")):
                raise ValueError(f"blocks: {b!r} is listed twice or lies inside {a!r}")
    return found
