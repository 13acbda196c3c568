"""Conv-2, Conv-4 and Conv-6: the VGG-like networks of Frankle & Carbin 2019 (Figure 2,
Appendix), scaled down from CIFAR-10 to any (C, H, W) input such as 1x28x28.

Conv-N: N/2 stages of two 3x3 convolutions (same padding, ReLU) then 2x2 max pooling, with 64,
128, 256 channels per stage; then fully connected 256 -> 256 -> classes. Gaussian Glorot init.
On 28x28 the spatial size goes 28 -> 14 -> 7 -> 3.
"""

from __future__ import annotations

import torch
from torch import nn

from sparsetorch.models.init import glorot_

STAGE_CHANNELS = (64, 128, 256)


def _check_image_shape(input_shape: tuple[int, ...], model: str) -> tuple[int, int, int]:
    if len(input_shape) != 3 or min(input_shape) < 1:
        raise ValueError(
            f"input_shape for {model} must be (channels, height, width), got {tuple(input_shape)}"
        )
    return input_shape[0], input_shape[1], input_shape[2]


class ConvNet(nn.Module):
    def __init__(
        self,
        stages: int,
        input_shape: tuple[int, ...] = (1, 28, 28),
        num_classes: int = 10,
    ) -> None:
        super().__init__()
        if stages not in (1, 2, 3):
            raise ValueError(f"stages must be 1, 2 or 3 (Conv-2/4/6), got {stages}")
        channels, height, width = _check_image_shape(input_shape, f"conv{2 * stages}")
        if height >> stages < 1 or width >> stages < 1:
            raise ValueError(
                f"input_shape {tuple(input_shape)} is too small for {stages} 2x2 poolings"
            )
        layers: list[nn.Module] = []
        for out_channels in STAGE_CHANNELS[:stages]:
            layers += [
                nn.Conv2d(channels, out_channels, 3, padding=1),
                nn.ReLU(),
                nn.Conv2d(out_channels, out_channels, 3, padding=1),
                nn.ReLU(),
                nn.MaxPool2d(2),
            ]
            channels = out_channels
        self.features = nn.Sequential(*layers)
        flat = channels * (height >> stages) * (width >> stages)
        self.classifier = nn.Sequential(
            nn.Linear(flat, 256),
            nn.ReLU(),
            nn.Linear(256, 256),
            nn.ReLU(),
            nn.Linear(256, num_classes),
        )
        glorot_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)  # (B, C', H / 2^stages, W / 2^stages)
        return self.classifier(x.flatten(1))  # (B, classes)
