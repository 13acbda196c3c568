"""How every block is called on the calibration data, recorded in one forward pass.

The model runs once per batch with a forward pre-hook on every block to record: each block's
arguments and keyword arguments are recorded as the model's own forward builds them (so a
block that gets a sliding-window mask, another block's position bias or the encoder's
outputs keeps getting them), and the pass stops at the last block's call, so that block and
everything after it never run. A block whose input is the previous block's output, the same
tensor (``hidden = block(hidden, ...)`` in the parent's loop), is marked ``chained``: the
pipeline feeds it the previous block's output as it computes it, and the recorded copy is
not kept. Every other block input (the first block's, a new stack's, one the parent changed
between blocks) is kept as recorded.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from sparsetorch.batches import to_device
from sparsetorch.post_training.blocks import stack_of
from sparsetorch.post_training.calibration import Call, token_mask


class _Stop(Exception):
    """Raised inside the forward pass when the last block to record is reached."""


@dataclass(frozen=True)
class BlockCall:
    """How a block is called on one calibration batch."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    tokens: torch.Tensor | None  # (B, T) bool, True = a real (unpadded) token; or None
    chained: bool = False  # its input is the previous block's output (not kept here)

    def hidden(self) -> Any:
        return self.args[0] if self.args else self.kwargs.get("hidden_states")

    def with_hidden(self, hidden: torch.Tensor | None) -> BlockCall:
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


def _recorded(args: tuple, kwargs: dict, tokens, previous: Any) -> BlockCall:
    """The call as recorded; its input dropped when it is ``previous`` (the output of the
    block before)."""
    call = BlockCall(args, dict(kwargs), tokens)
    if previous is not None and call.hidden() is previous:
        return replace(call.with_hidden(None), chained=True)
    return call


def record_calls(
    model: nn.Module,
    blocks: Sequence[tuple[str, nn.Module]],
    calls: Sequence[Call],
    device: torch.device | None,
    on_device: Callable[[nn.Module], contextlib.AbstractContextManager[None]],
    placed: Sequence[tuple[str, nn.Module]] = (),
) -> list[list[BlockCall]]:
    """``[block][batch]``: the call of every block in ``blocks`` (each stack's blocks in
    forward order) on every calibration batch. The pass stops once every block's call is
    recorded, before the last one runs. Every block that runs, and every module of
    ``placed`` (the other blocks of the model: an encoder runs while its decoder is
    recorded), runs inside ``on_device(block)`` (where it computes when the model is
    offloaded).

    The batch's ``attention_mask`` marks the real tokens of the stack the forward pass reaches
    first; a later stack (a decoder) gets its ``decoder_attention_mask``, or counts every
    position."""
    index = {id(block): i for i, (_, block) in enumerate(blocks)}
    stacks = {id(block): stack_of(name) for name, block in [*placed, *blocks]}
    found: list[list[BlockCall]] = [[] for _ in blocks]
    state: dict[str, Any] = {}
    moves = contextlib.ExitStack()

    def before(module: nn.Module, args: tuple, kwargs: dict) -> None:
        i = index.get(id(module))
        stack = stacks[id(module)]
        state["stacks"].setdefault(stack, len(state["stacks"]))
        first_call = i is not None and len(found[i]) <= state["batch"]
        if first_call:
            tokens = state["tokens"] if state["stacks"][stack] == 0 else state["later_tokens"]
            previous = stacks[id(blocks[i - 1][1])] if i > 0 else None
            chained = state["output_of"] == i - 1 and previous == stack
            found[i].append(_recorded(args, kwargs, tokens, state["output"] if chained else None))
            state["left"] -= 1
            if state["left"] == 0:
                raise _Stop
        state["first_call"] = first_call
        moves.enter_context(on_device(module))

    def after(module: nn.Module, args: tuple, output: Any) -> None:
        moves.close()
        i = index.get(id(module))
        # a repeated call (a shared block) or another block: the next block is not chained
        keep = i is not None and state["first_call"]
        state["output"], state["output_of"] = (first_tensor(output), i) if keep else (None, None)

    handles = []
    for _, block in [*blocks, *placed]:
        handles.append(block.register_forward_pre_hook(before, with_kwargs=True))
        handles.append(block.register_forward_hook(after))
    try:
        for i, call in enumerate(calls):
            args, kwargs = to_device(call, device)
            later = kwargs.get("decoder_attention_mask")
            later = later.bool() if isinstance(later, torch.Tensor) and later.dim() == 2 else None
            state.update(
                batch=i, tokens=token_mask((args, kwargs)), later_tokens=later, output=None,
                output_of=None, stacks={}, left=len(blocks),
            )  # fmt: skip
            try:
                model(*args, **kwargs)
            except _Stop:
                pass
            finally:
                moves.close()
            missing = [name for (name, _), got in zip(blocks, found) if len(got) <= i]
            if missing:
                raise ValueError(
                    f"calibration[{i}]: the model's forward pass never called block "
                    f"{missing[0]!r}; pass blocks= naming the blocks the forward pass runs"
                )
    finally:
        for handle in handles:
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
