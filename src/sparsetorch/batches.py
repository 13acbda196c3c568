"""Data batches of any model: what a batch may be, how the model is called on it, its loss.

Inputs (:func:`call_model`) are one of

* a tensor: the model's one positional input, ``model(x)``;
* a tuple or list: positional inputs, ``model(*x)``;
* a mapping (a dict, a Hugging Face ``BatchEncoding``): keyword inputs, ``model(**x)``, with
  ``attention_mask``, ``labels`` and whatever else the model takes.

A batch that scores a loss (:func:`split_batch`) is one of

* an ``(inputs, targets)`` pair, a tuple or list of two whose first item is inputs as above and
  whose second is a tensor or None (``(x, y)``, ``((ids, mask), y)``, ``({"input_ids": ids},
  y)``): the loss compares the output with ``targets``. Positional inputs always go inside the
  pair, so ``(a, b)`` of two tensors is ``inputs=a, targets=b``, never ``model(a, b)``;
* a mapping: keyword inputs whose loss the model computes itself (Hugging Face models do when
  ``labels`` is in the batch), or that ``loss_fn(output, batch)`` computes;
* a tensor: the input of a model that computes its own loss, or of ``loss_fn(output, batch)``.

The loss (:func:`loss_of`): ``loss_fn(output, targets)`` for a pair (``loss_fn(output, batch)``
otherwise) when a ``loss_fn`` is given; else mean cross-entropy of the output's logits against
the targets; else the output's own ``loss`` (a ``ModelOutput`` or dict entry); else a
ValueError. An output is a tensor (the logits), a ``ModelOutput`` or dict (its ``logits``
entry, else its only tensor), or a tuple or list (its first tensor: with
``return_dict=False`` and labels a Hugging Face model puts its loss first, so keep its default
``ModelOutput``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

LossFn = Callable[[Any, Any], torch.Tensor]
_INPUT_TYPES = (torch.Tensor, tuple, list, Mapping)


def _kind(x: Any) -> str:
    return type(x).__name__


def check_inputs(inputs: Any, where: str = "inputs") -> None:
    """TypeError unless ``inputs`` is a tensor, a tuple/list or a mapping with string keys."""
    if not isinstance(inputs, _INPUT_TYPES):
        raise TypeError(
            f"{where} must be a tensor, a tuple/list of positional inputs or a dict of keyword "
            f"inputs, got {_kind(inputs)}"
        )
    if isinstance(inputs, Mapping):
        bad = [k for k in inputs if not isinstance(k, str)]
        if bad:
            raise TypeError(f"{where}: a dict of inputs needs string keys, got {bad}")


def call_model(model: Callable[..., Any], inputs: Any) -> Any:
    """``model(x)``, ``model(*x)`` or ``model(**x)`` for a tensor, a tuple/list or a mapping."""
    check_inputs(inputs)
    if isinstance(inputs, Mapping):
        return model(**inputs)
    if isinstance(inputs, tuple | list):
        return model(*inputs)
    return model(inputs)


def is_pair(batch: Any) -> bool:
    """Whether ``batch`` is an ``(inputs, targets)`` pair (see the module docstring)."""
    return (
        isinstance(batch, tuple | list)
        and len(batch) == 2
        and isinstance(batch[0], _INPUT_TYPES)
        and (batch[1] is None or isinstance(batch[1], torch.Tensor))
    )


def split_batch(batch: Any, where: str = "batch") -> tuple[Any, torch.Tensor | None]:
    """``(inputs, targets)`` of a batch; ``targets`` is None for a mapping or a tensor."""
    if isinstance(batch, torch.Tensor | Mapping):
        check_inputs(batch, where)
        return batch, None
    if is_pair(batch):
        check_inputs(batch[0], f"{where}[0] (the inputs)")
        return batch[0], batch[1]
    raise TypeError(
        f"{where} must be a tensor, a dict of keyword inputs or an (inputs, targets) pair "
        f"(positional inputs inside it: ((a, b), targets)), got {_kind(batch)}"
        + (f" of {len(batch)} items" if isinstance(batch, tuple | list) else "")
    )


def first_tensor(value: Any) -> torch.Tensor | None:
    """The first tensor in ``value`` (depth first through tuples, lists and mappings)."""
    if isinstance(value, torch.Tensor):
        return value
    items = value.values() if isinstance(value, Mapping) else value
    if isinstance(value, tuple | list | Mapping):
        for item in items:
            found = first_tensor(item)
            if found is not None:
                return found
    return None


def batch_size(batch: Any) -> int:
    """Examples in a batch: dim 0 of its inputs' first tensor (1 for a 0-dim one)."""
    inputs, _ = split_batch(batch)
    t = first_tensor(inputs)
    if t is None:
        raise ValueError("the batch's inputs hold no tensor")
    return int(t.shape[0]) if t.dim() else 1


def to_device(value: Any, device: torch.device | str | None) -> Any:
    """``value`` with every tensor in it (inside tuples, lists and mappings too) on ``device``;
    a mapping comes back as a dict."""
    if device is None:
        return value
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, tuple | list):
        return type(value)(to_device(v, device) for v in value)
    if isinstance(value, Mapping):
        return {k: to_device(v, device) for k, v in value.items()}
    return value


def logits_of(output: Any) -> torch.Tensor:
    """The logits of a model output: a tensor itself; a ``ModelOutput``/dict's ``logits`` (else
    its only tensor entry); a tuple/list's first tensor."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, Mapping):
        if isinstance(output.get("logits"), torch.Tensor):
            return output["logits"]
        tensors = [v for v in output.values() if isinstance(v, torch.Tensor)]
        if len(tensors) == 1:
            return tensors[0]
        raise ValueError(
            f"the model output ({_kind(output)}) has no 'logits' and {len(tensors)} tensors "
            f"({list(output)}): pass loss_fn(output, targets) to say what to score"
        )
    found = first_tensor(output) if isinstance(output, tuple | list) else None
    if found is None:
        raise ValueError(f"the model output ({_kind(output)}) holds no tensor")
    return found


def own_loss(output: Any) -> torch.Tensor | None:
    """The loss a model computed itself (``output.loss`` / ``output["loss"]``), or None."""
    loss = output.get("loss") if isinstance(output, Mapping) else getattr(output, "loss", None)
    return loss if isinstance(loss, torch.Tensor) else None


def map_logits(output: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    """``output`` with its logits (:func:`logits_of`) replaced by ``fn(logits)``; a
    ``ModelOutput``/dict is copied, never changed."""
    if isinstance(output, torch.Tensor):
        return fn(output)
    logits = logits_of(output)
    if isinstance(output, Mapping):
        new = output.copy() if hasattr(output, "copy") else dict(output)
        key = next(k for k, v in output.items() if v is logits)
        new[key] = fn(logits)
        return new
    items = list(output)
    i = next(i for i, v in enumerate(items) if v is logits)
    items[i] = fn(logits)
    return type(output)(items) if isinstance(output, list) else tuple(items)


def cross_entropy(output: Any, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of the output's logits, ``(N, C)`` or ``(N, T, V)``, against class
    targets ``(N,)`` or ``(N, T)``."""
    logits = logits_of(output)
    return F.cross_entropy(logits.flatten(0, -2), targets.flatten())


def loss_of(output: Any, batch: Any, loss_fn: LossFn | None = None) -> torch.Tensor:
    """The loss of ``output`` on ``batch`` by the rule of the module docstring."""
    _, targets = split_batch(batch)
    if loss_fn is not None:
        return loss_fn(output, targets if is_pair(batch) else batch)
    if targets is not None:
        return cross_entropy(output, targets)
    loss = own_loss(output)
    if loss is None:
        raise ValueError(
            "the batch has no targets and the model computed no loss: pass an (inputs, "
            "targets) pair, loss_fn(output, batch), or labels the model uses (a Hugging Face "
            "model computes its loss when 'labels' is in the batch)"
        )
    return loss


def model_loss(model: nn.Module, batch: Any, loss_fn: LossFn | None = None) -> torch.Tensor:
    """``loss_of(call_model(model, inputs), batch, loss_fn)``."""
    inputs, _ = split_batch(batch)
    return loss_of(call_model(model, inputs), batch, loss_fn)


__all__ = [
    "LossFn",
    "batch_size",
    "call_model",
    "check_inputs",
    "cross_entropy",
    "first_tensor",
    "is_pair",
    "logits_of",
    "loss_of",
    "map_logits",
    "model_loss",
    "own_loss",
    "split_batch",
    "to_device",
]
