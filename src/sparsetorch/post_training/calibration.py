"""Calibration batches: what a batch may be, and how the model is called on it.

A batch is one of

* a tensor: the model's one positional input, ``model(batch)``;
* a tuple or list: positional inputs, ``model(*batch)``;
* a mapping (a dict, a Hugging Face ``BatchEncoding``): keyword inputs, ``model(**batch)``,
  ``attention_mask`` included.

One-shot pruning needs no loss: whatever the model returns (a tensor, a tuple, a dict or a
``ModelOutput``) is ignored; only the activations seen on the way count.

Padding: when a mapping batch holds a 2-D ``attention_mask`` ``(B, T)``, the rows of a layer
input shaped ``(B, T, features)`` at padded positions (mask 0) are left out of the statistics,
so padded tokens do not count as calibration data.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch

Call = tuple[tuple[Any, ...], dict[str, Any]]  # (positional args, keyword args)


def as_call(batch: Any, where: str = "batch") -> Call:
    """``(args, kwargs)`` to call the model with on ``batch``."""
    if isinstance(batch, torch.Tensor):
        return (batch,), {}
    if isinstance(batch, tuple | list):
        return tuple(batch), {}
    if isinstance(batch, Mapping):
        bad = [k for k in batch if not isinstance(k, str)]
        if bad:
            raise TypeError(f"{where}: a dict batch needs string keys (keyword names), got {bad}")
        return (), dict(batch)
    raise TypeError(
        f"{where} must be a tensor, a tuple/list of positional inputs or a dict of keyword "
        f"inputs, got {type(batch).__name__}"
    )


def as_calls(calibration: Iterable[Any] | None) -> list[Call]:
    """Every batch of ``calibration`` (an iterable of batches: a list, a DataLoader) as a call."""
    if calibration is None:
        return []
    if isinstance(calibration, torch.Tensor | Mapping | str | bytes):
        raise TypeError(
            "calibration must be an iterable of batches (a list, a DataLoader), got a "
            f"{type(calibration).__name__}: wrap one batch in a list, calibration=[batch]"
        )
    if not isinstance(calibration, Iterable):
        raise TypeError(
            f"calibration must be an iterable of batches, got {type(calibration).__name__}"
        )
    calls = [as_call(batch, f"calibration[{i}]") for i, batch in enumerate(calibration)]
    if not calls:
        raise ValueError("calibration holds no batch")
    return calls


def token_mask(call: Call) -> torch.Tensor | None:
    """The batch's 2-D ``attention_mask`` as bool ``(B, T)`` (True = a real token), if any."""
    mask = call[1].get("attention_mask")
    if isinstance(mask, torch.Tensor) and mask.dim() == 2:
        return mask.bool()
    return None
