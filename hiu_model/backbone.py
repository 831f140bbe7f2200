"""The stem and the per-stack encoder of HIU-DMTL (plain torch, no torchvision).

Stem (paper's implementation appendix): two 7x7 convolutions of stride 2 (64 and 128 channels
in the paper), so a 256x256 input reaches 64x64, the heat-map resolution. The stem runs once;
every stacked multi-task block re-encodes its output.

Encoder: the body of a ResNet (conv2_x..conv5_x; the appendix says ResNet-50, blocks "3, 4, 5,
6", which we read as the standard 3, 4, 6, 3). Stage strides are 1, 2, 2, 2, so the encoder of
a 64x64 input returns features at 64, 32, 16 and 8 pixels; the decoders use all four as skip
connections. Each block takes the stem features concatenated with the previous block's fused
task features; the first block the stem features alone (or, as runs before
``ModelConfig.first_block_zeros`` did, next to zeros).

All convolutions are followed by batch normalisation and ReLU; shapes are (B, C, H, W).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


def conv_bn_relu(in_channels: int, out_channels: int, kernel: int = 3, stride: int = 1) -> nn.Sequential:
    """Convolution with 'same' padding (for odd kernels), batch norm and ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class Stem(nn.Module):
    """Two stride-2 convolutions (7x7 in the paper): (B, 3, S, S) -> (B, channels[-1], S/4, S/4)."""

    def __init__(self, channels: Sequence[int] = (64, 128), kernels: Sequence[int] = (7, 7)) -> None:
        super().__init__()
        first, second = channels
        self.layers = nn.Sequential(conv_bn_relu(3, first, kernels[0], 2), conv_bn_relu(first, second, kernels[1], 2))
        self.out_channels = second

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) normalised crop -> (B, channels[-1], S/4, S/4) features."""
        return self.layers(image)


class BasicBlock(nn.Module):
    """ResNet-18/34 residual block (two 3x3 convolutions); used by the light presets."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = conv_bn_relu(in_channels, out_channels, 3, stride)
        self.conv2 = nn.Sequential(nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
                                   nn.BatchNorm2d(out_channels))
        self.shortcut = _shortcut(in_channels, out_channels, stride)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, h, w) -> (B, out_channels, h / stride, w / stride)."""
        return self.relu(self.conv2(self.conv1(x)) + self.shortcut(x))


class Bottleneck(nn.Module):
    """ResNet-50 bottleneck (1x1 reduce, 3x3 with the stride, 1x1 expand) with ``expansion``."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, expansion: int = 4) -> None:
        super().__init__()
        mid = max(out_channels // expansion, 1)
        self.body = nn.Sequential(
            conv_bn_relu(in_channels, mid, 1),
            conv_bn_relu(mid, mid, 3, stride),
            nn.Conv2d(mid, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        self.shortcut = _shortcut(in_channels, out_channels, stride)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, h, w) -> (B, out_channels, h / stride, w / stride)."""
        return self.relu(self.body(x) + self.shortcut(x))


def _shortcut(in_channels: int, out_channels: int, stride: int) -> nn.Module:
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                         nn.BatchNorm2d(out_channels))


class Encoder(nn.Module):
    """ResNet body: ``len(widths)`` stages, the first at stride 1 and the others at stride 2.

    Args:
        in_channels: channels of the input (stem + previous block's fused features).
        widths: output channels of each stage (ResNet-50: 256, 512, 1024, 2048).
        blocks: residual blocks per stage (ResNet-50: 3, 4, 6, 3).
        block: ``"bottleneck"`` (ResNet-50) or ``"basic"`` (ResNet-18 style, for small presets).
    Forward: (B, in_channels, h, h) -> list of stage features, stage i of shape
    (B, widths[i], h / 2**i, h / 2**i), finest first.
    """

    def __init__(self, in_channels: int, widths: Sequence[int], blocks: Sequence[int], block: str = "bottleneck") -> None:
        super().__init__()
        if len(widths) != len(blocks):
            raise ValueError(f"encoder widths {list(widths)} and blocks {list(blocks)} differ in length")
        self.stages = nn.ModuleList()
        channels = in_channels
        for index, (width, count) in enumerate(zip(widths, blocks)):
            layers = []
            for repeat in range(count):
                stride = 2 if index > 0 and repeat == 0 else 1
                layers.append(Bottleneck(channels, width, stride) if block == "bottleneck"
                              else BasicBlock(channels, width, stride))
                channels = width
            self.stages.append(nn.Sequential(*layers))
        self.widths = tuple(widths)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(B, in_channels, h, h) -> stage features, stage i (B, widths[i], h / 2**i, h / 2**i)."""
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features
