"""The inputs of the first block on the calibration data, and the calls of the blocks after it.

The part of the model before the first block (embeddings, position encodings, the attention
mask it builds) runs once per batch: a forward pre-hook on block 0 records the block's
arguments and keyword arguments and raises a private exception that ends the forward pass
there, so nothing after block 0 runs. Block i+1 is then called with block i's output in place
of the first argument (or ``hidden_states=``) and block 0's other arguments.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from sparsetorch.batches import to_device
from sparsetorch.post_training.calibration import Call, token_mask


class _Stop(Exception):
    """Raised inside the forward pass when block 0 is reached."""


@dataclass(frozen=True)
class BlockCall:
    """How a block is called on one calibration batch."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    tokens: torch.Tensor | None  # (B, T) bool, True = a real (unpadded) token; or None

    def hidden(self) -> Any:
        return self.args[0] if self.args else self.kwargs.get("hidden_states")

    def with_hidden(self, hidden: torch.Tensor) -> BlockCall:
        """The same call with ``hidden`` as the block's input."""
        if self.args:
            return replace(self, args=(hidden, *self.args[1:]))
        if "hidden_states" in self.kwargs:
            return replace(self, kwargs={**self.kwargs, "hidden_states": hidden})
        raise ValueError(
            "the first block takes neither a positional input nor hidden_states=, so the "
            "output of one block cannot be fed to the next: pass blocks= explicitly"
        )

    def run(self, block: nn.Module) -> Any:
        return block(*self.args, **self.kwargs)


def capture_first_block(
    model: nn.Module, block: nn.Module, calls: Sequence[Call], device: torch.device | None
) -> list[BlockCall]:
    """The call of ``block`` (the first block) on every calibration batch."""
    captured: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def stop(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        captured.append((args, dict(kwargs)))
        raise _Stop

    found = []
    handle = block.register_forward_pre_hook(stop, with_kwargs=True)
    try:
        for i, call in enumerate(calls):
            args, kwargs = to_device(call, device)
            try:
                model(*args, **kwargs)
            except _Stop:
                pass
            else:
                raise ValueError(
                    f"calibration[{i}]: the model's forward pass never called its first block; "
                    "pass blocks= naming the blocks the forward pass runs"
                )
            block_args, block_kwargs = captured.pop()
            tokens = token_mask((args, kwargs))
            found.append(BlockCall(block_args, block_kwargs, tokens))
    finally:
        handle.remove()
    return found


def first_tensor(output: Any) -> torch.Tensor:
    """A block's output: the tensor itself, or the first item of a tuple, dict or
    ``ModelOutput`` (the hidden states)."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, Mapping) and output:
        output = next(iter(output.values()))
    elif isinstance(output, tuple | list) and output:
        output = output[0]
    if isinstance(output, torch.Tensor):
        return output
    raise TypeError(
        f"a block returned {type(output).__name__}; expected a tensor, or a tuple/dict whose "
        "first item is the hidden-states tensor"
    )
