"""Where the model's parts live while it is pruned: a model larger than the GPU fits.

With offloading, only the part being computed is on the compute device: first the modules
outside the blocks (embeddings, position encodings; they compute the blocks' arguments) with
each block on the device while it runs in the recording pass, then one block at a time; each
goes back to where it was as soon as it is done. Tensors move in place
(``param.data``), so parameters keep their identity: optimizers, masks and tied weights stay
bound.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from torch import nn


def _own_tensors(module: nn.Module) -> Iterator[torch.Tensor]:
    for p in module._parameters.values():
        if p is not None:
            yield p
    for b in module._buffers.values():
        if b is not None:
            yield b


def _move_own_(module: nn.Module, device: torch.device) -> None:
    """Move the module's own parameters and buffers (not its children's) to ``device``."""
    for p in module._parameters.values():
        if p is not None and p.device != device:
            p.data = p.data.to(device)
    for key, b in module._buffers.items():
        if b is not None and b.device != device:
            module._buffers[key] = b.to(device)


def _home(module: nn.Module) -> torch.device | None:
    return next((t.device for t in _own_tensors(module)), None)


class Placement:
    """Moves modules to ``device`` for the time they compute, and back."""

    def __init__(self, model: nn.Module, blocks: Sequence[nn.Module], device: torch.device):
        self.device = device
        inside = {id(m) for block in blocks for m in block.modules()}
        self.outside = [m for m in model.modules() if id(m) not in inside]

    @contextlib.contextmanager
    def on_device(self, modules: Sequence[nn.Module]) -> Iterator[None]:
        homes = [(m, home) for m in modules if (home := _home(m)) is not None]
        try:
            for module, _ in homes:
                _move_own_(module, self.device)
            yield
        finally:
            for module, home in homes:
                _move_own_(module, home)

    def outside_blocks(self) -> contextlib.AbstractContextManager[None]:
        return self.on_device(self.outside)

    def block(self, block: nn.Module) -> contextlib.AbstractContextManager[None]:
        return self.on_device(list(block.modules()))


class NoPlacement:
    """Everything already is where it computes."""

    @contextlib.contextmanager
    def _nothing(self, *args: object) -> Iterator[None]:
        yield

    outside_blocks = _nothing
    block = _nothing
