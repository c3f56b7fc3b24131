"""A deliberately small fully-convolutional network, built the way oxunet builds registered
networks: ``cls(input_channels=, num_classes=, deep_supervision=, **arch_kwargs)``."""

from __future__ import annotations

import torch
from torch import nn


class TinyConvNet(nn.Module):
    def __init__(self, input_channels: int, num_classes: int, deep_supervision: bool = False, features: int = 8,
                 conv_op: type = nn.Conv3d):
        super().__init__()
        norm = nn.InstanceNorm3d if conv_op is nn.Conv3d else nn.InstanceNorm2d
        self.body = nn.Sequential(
            conv_op(input_channels, features, 3, padding=1), norm(features, affine=True), nn.LeakyReLU(inplace=True),
            conv_op(features, features, 3, padding=1), norm(features, affine=True), nn.LeakyReLU(inplace=True),
        )
        self.head = conv_op(features, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))

    @staticmethod
    def initialize(module: nn.Module) -> None:  # oxunet applies this after construction, as nnU-Net
        if isinstance(module, (nn.Conv2d, nn.Conv3d)):
            nn.init.kaiming_normal_(module.weight, a=1e-2)
            nn.init.zeros_(module.bias)
