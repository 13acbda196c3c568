"""The blocks a model is pruned by, one at a time: its lists of repeated layers.

Found generically: the model's ``nn.ModuleList``/``nn.Sequential`` containers whose children
(at least two) all have the same type are its stacks of blocks. Every such stack outside the
others that holds at least a tenth of the parameters of the largest is pruned, in the order
the model registers them: ``model.layers`` of Llama-style models, ``transformer.h`` of GPT-2,
``encoder.layer`` of BERT, ``blocks`` of ``sparsetorch.models``' Transformer, and both the
encoder's and the decoder's layers of T5, BART or Whisper, both towers of CLIP. (A smaller
repeated list, say a few classifier heads, is not a stack.) A model without one is one block,
the whole model.

``blocks=`` overrides the search: the name of a container (its children are the blocks), or a
list of module names or modules, in the order the forward pass calls them. Blocks with the same
parent module form one stack.

How each block is called comes from the model's own forward pass (``capture``): its attention
mask, position embeddings and other arguments are its own. Sequential pruning feeds block i+1
block i's output where the model does (its first positional argument, or ``hidden_states=``,
is that very tensor).
"""

from __future__ import annotations

import warnings
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


STACK_FRACTION = 0.1  # a repeated list smaller than this share of the largest is no stack


def _inside(name: str, outer: str) -> bool:
    return outer == "" or name.startswith(outer + ".")


def find_blocks(model: nn.Module) -> list[Block]:
    """The blocks of every stack of ``model``, stacks in the order the model registers them
    (``[("", model)]`` when there is none): see the module docstring."""
    lists = [(name, m) for name, m in model.named_modules() if _repeated(m)]
    outer = [(n, m) for n, m in lists if not any(o != n and _inside(n, o) for o, _ in lists)]
    if not outer:
        return [("", model)]
    largest = max(_size(m) for _, m in outer)
    stacks = [(n, m) for n, m in outer if _size(m) >= STACK_FRACTION * largest]
    small = [n for n, m in outer if (n, m) not in stacks and _layered(m) and _size(m)]
    single = [  # a list of one block (a one-layer decoder) is no repeated list
        n
        for n, m in model.named_modules()
        if isinstance(m, nn.ModuleList)
        and len(m) == 1
        and _layered(m)
        and not any(_inside(n, s) for s, _ in outer)
    ]
    if small or single:
        warnings.warn(
            f"oneshot: the layers {small + single} stay dense: "
            + (f"{small} hold less than {STACK_FRACTION:.0%} of the largest stack's parameters"
               if small else "")
            + ("; " if small and single else "")
            + (f"{single} hold one block each" if single else "")
            + "; list their blocks in blocks= (with the other stacks' blocks) to prune them too",
            stacklevel=3,
        )  # fmt: skip
    return [block for name, container in stacks for block in _children(name, container)]


def _layered(container: nn.Module) -> bool:
    """Its children are layers of modules (transformer blocks), not single layers (heads)."""
    return all(any(True for _ in child.children()) for child in container.children())


def stack_of(name: str) -> str:
    """The stack a block belongs to: its parent module's name."""
    return name.rpartition(".")[0]


def stacks(blocks: Sequence[Block]) -> list[list[Block]]:
    """``blocks`` split into runs of consecutive blocks with the same parent module."""
    out: list[list[Block]] = []
    for name, block in blocks:
        if out and stack_of(out[-1][0][0]) == stack_of(name):
            out[-1].append((name, block))
        else:
            out.append([(name, block)])
    return out


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
