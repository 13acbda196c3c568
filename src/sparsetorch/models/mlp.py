"""``mlp``: a fully connected network sized by the data: input -> hidden... -> classes.

``hidden`` is the widths of the hidden layers (``"300,100"``, ``[300, 100]``, ``512``; empty
for a linear classifier), ``activation`` one of relu, gelu, tanh, sigmoid, and ``dropout``
the probability applied after each hidden activation. PyTorch's default initialisation
(Kaiming-uniform weights); the runner seeds it.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}


def parse_hidden(hidden: Any) -> tuple[int, ...]:
    """``"300,100"``, ``[300, 100]``, ``300`` or ``""`` -> a tuple of widths >= 1."""
    if isinstance(hidden, str):
        parts = [p.strip() for p in hidden.split(",") if p.strip()]
        try:
            widths = tuple(int(p) for p in parts)
        except ValueError:
            raise ValueError(f"hidden must be widths such as 300,100, got {hidden!r}") from None
    elif isinstance(hidden, int) and not isinstance(hidden, bool):
        widths = (hidden,)
    elif isinstance(hidden, list | tuple) and all(
        isinstance(w, int) and not isinstance(w, bool) for w in hidden
    ):
        widths = tuple(hidden)
    else:
        raise TypeError(f"hidden must be widths such as 300,100 or [300, 100], got {hidden!r}")
    if any(w < 1 for w in widths):
        raise ValueError(f"hidden widths must be >= 1, got {widths}")
    return widths


class MLP(nn.Module):
    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        hidden: Any = (300, 100),
        activation: str = "relu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        widths = parse_hidden(hidden)
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}"
            )
        if (
            isinstance(dropout, bool)
            or not isinstance(dropout, int | float)
            or not 0 <= dropout < 1
        ):
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        layers: list[nn.Module] = []
        width = math.prod(input_shape)
        for out in widths:
            layers += [nn.Linear(width, out), ACTIVATIONS[activation]()]
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = out
        layers.append(nn.Linear(width, num_classes))
        self.layers = nn.Sequential(*layers)
        self.hidden = widths

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not x.is_floating_point():
            raise TypeError(f"mlp takes float inputs, got {x.dtype} (token ids need an embedding)")
        return self.layers(x.flatten(1))  # (B, classes)
