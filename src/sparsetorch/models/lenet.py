"""LeNet-300-100 (LeCun et al. 1998), the fully connected network of the lottery-ticket paper
(Frankle & Carbin 2019): input -> 300 -> 100 -> classes, ReLU, Gaussian Glorot init."""

from __future__ import annotations

import math

import torch
from torch import nn

from sparsetorch.models.init import glorot_


class LeNet300100(nn.Module):
    def __init__(
        self,
        input_shape: tuple[int, ...] = (1, 28, 28),
        num_classes: int = 10,
        hidden: tuple[int, ...] = (300, 100),
    ) -> None:
        super().__init__()
        widths = (math.prod(input_shape), *hidden)
        self.fc1 = nn.Linear(widths[0], widths[1])
        self.fc2 = nn.Linear(widths[1], widths[2])
        self.fc3 = nn.Linear(widths[2], num_classes)
        glorot_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)  # (B, C*H*W)
        x = torch.relu(self.fc1(x))
        x = torch.relu(self.fc2(x))
        return self.fc3(x)  # (B, classes)
