"""Mixed precision in the runner: ``training.precision`` fp32 | bf16 | fp16.

* ``bf16``: the forward pass (and evaluation) under ``torch.autocast(dtype=torch.bfloat16)``;
  weights, gradients and optimizer state stay float32.
* ``fp16``: autocast to float16 and a ``torch.amp.GradScaler``: the loss is scaled before
  ``backward()``, the gradients are unscaled right after it (hooks see the true gradient, as
  in fp32), and the optimizer step is skipped, the scale backed off, when a gradient is inf or
  NaN. A dynamic-sparsity method steps through ``algo.step(scaler=...)``, which skips its
  topology update with such a step. The scaler's state is saved with every resume checkpoint.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class Precision:
    """The autocast context and the optional GradScaler of one run."""

    def __init__(self, name: str, device: torch.device) -> None:
        if name not in DTYPES:
            raise ValueError(f"precision must be one of {', '.join(DTYPES)}, got {name!r}")
        self.name = name
        self.device = torch.device(device)
        self.dtype = DTYPES[name]
        self.scaler = torch.amp.GradScaler(self.device.type) if name == "fp16" else None

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        """The forward pass's context (nothing for fp32)."""
        if self.dtype is None:
            yield
            return
        with torch.autocast(self.device.type, dtype=self.dtype):
            yield

    def backward(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        """``loss.backward()``; under fp16 on the scaled loss, then the gradients unscaled."""
        if self.scaler is None:
            loss.backward()
            return
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        """``optimizer.step()``; under fp16 the scaler's step (skipped on inf/NaN) and update."""
        if self.scaler is None:
            optimizer.step()
            return
        self.scaler.step(optimizer)
        self.scaler.update()

    def state_dict(self) -> dict[str, Any] | None:
        return None if self.scaler is None else self.scaler.state_dict()

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        if (state is None) != (self.scaler is None):
            saved = "no GradScaler state" if state is None else "a GradScaler state"
            raise ValueError(
                f"the resume checkpoint holds {saved} but the run's precision is {self.name}: "
                "resume with the precision it was started with"
            )
        if state is not None:
            self.scaler.load_state_dict(state)
