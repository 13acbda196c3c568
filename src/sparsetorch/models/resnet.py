"""ResNet-20 style networks (He et al. 2016, Section 4.2: the CIFAR-10 ResNets of depth 6n+2):
a 3x3 stem of 16 channels, three stages of n basic blocks with 16, 32, 64 channels (stride 2 at
the start of stages 2 and 3), global average pooling and one linear layer. Shortcuts that change
shape are 1x1 convolutions with batch norm (option B), as OpenLTH's CIFAR ResNets. Works on any
(C, H, W) input, e.g. 1x28x28 (spatial size 28 -> 14 -> 7). Kaiming init.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sparsetorch.models.convnet import _check_image_shape
from sparsetorch.models.init import kaiming_


class BasicBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(
        self,
        depth: int = 20,
        input_shape: tuple[int, ...] = (1, 28, 28),
        num_classes: int = 10,
        width: int = 16,
    ) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"depth must be 6n+2 with n >= 1 (8, 14, 20, 32, ...), got {depth}")
        if width < 1:
            raise ValueError(f"width must be >= 1, got {width}")
        channels = _check_image_shape(input_shape, f"resnet{depth}")[0]
        blocks_per_stage = (depth - 2) // 6
        self.conv = nn.Conv2d(channels, width, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(width)
        blocks: list[nn.Module] = []
        in_channels = width
        for stage in range(3):
            out_channels = width * 2**stage
            for i in range(blocks_per_stage):
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(BasicBlock(in_channels, out_channels, stride))
                in_channels = out_channels
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(in_channels, num_classes)
        kaiming_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn(self.conv(x)))  # (B, w, H, W)
        x = self.blocks(x)  # (B, 4w, H/4, W/4)
        x = x.mean(dim=(2, 3))  # (B, 4w) global average pooling
        return self.fc(x)  # (B, classes)
