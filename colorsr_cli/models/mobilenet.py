"""MobileNetV2 (Sandler et al. 2018) as a feature extractor: an ImageNet-trained encoder that a
colouriser borrows, so that what a region shows (foliage, sky, a face) is known before its
colour is chosen. Layout and padding follow the Keras application (explicit bottom/right zero
padding before every stride-2 convolution, batch-norm epsilon 1e-3), whose weights
tools/mobilenet_from_nsfwjs.py converts."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from colorsr_cli.models.descriptor import ModelDescriptor

# (expansion, output channels, repeats, first stride) of the inverted-residual stages.
STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
          (6, 320, 1, 1))
# Block indices whose outputs are the features at strides 2, 4, 8, 16 and 32.
TAPS = (0, 2, 5, 12, 16)
TAP_CHANNELS = (16, 24, 32, 96, 320)
BN_EPS = 1e-3


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS)


class _ConvBN(nn.Module):
    """Convolution without bias, batch norm, optional ReLU6. A stride-2 convolution pads the
    bottom and right edge by one (Keras' correct_pad for even sizes), stride 1 pads all sides."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1,
                 relu: bool = True):
        super().__init__()
        self.stride, self.kernel, self.relu = stride, kernel, relu
        self.conv = nn.Conv2d(cin, cout, kernel, stride, 0 if stride == 2 else kernel // 2,
                              groups=groups, bias=False)
        self.bn = _bn(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 2 and self.kernel > 1:
            x = F.pad(x, (0, 1, 0, 1))
        x = self.bn(self.conv(x))
        return F.relu6(x) if self.relu else x


class InvertedResidual(nn.Module):
    """Expand (1x1, ReLU6), depthwise 3x3 (ReLU6), project (1x1, linear); residual when the
    shape is kept."""

    def __init__(self, cin: int, cout: int, stride: int, expansion: int):
        super().__init__()
        hidden = cin * expansion
        self.expand = _ConvBN(cin, hidden) if expansion != 1 else None
        self.depthwise = _ConvBN(hidden, hidden, 3, stride, groups=hidden)
        self.project = _ConvBN(hidden, cout, relu=False)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.expand(x) if self.expand is not None else x
        y = self.project(self.depthwise(y))
        return x + y if self.residual else y


@dataclass(frozen=True)
class MobileNetV2Config:
    # Blocks kept (1..17); the features are the outputs of the TAPS up to the last block kept.
    blocks: int = 17


class MobileNetV2Features(nn.Module):
    """Input: RGB (N, 3, H, W) in [-1, 1] (x / 127.5 - 1 of 8-bit values), H and W multiples of
    32. Output: the tapped block outputs, strides 2, 4, 8, 16, 32 (channels TAP_CHANNELS)."""

    def __init__(self, config: MobileNetV2Config = MobileNetV2Config()):
        super().__init__()
        if not 1 <= config.blocks <= 17:
            raise ValueError(f"MobileNetV2 has 17 blocks, not {config.blocks}")
        self.config = config
        self.stem = _ConvBN(3, 32, 3, 2)
        blocks, cin = [], 32
        for expansion, cout, repeats, stride in STAGES:
            for k in range(repeats):
                blocks.append(InvertedResidual(cin, cout, stride if k == 0 else 1, expansion))
                cin = cout
        self.blocks = nn.ModuleList(blocks[:config.blocks])

    @property
    def descriptor(self) -> ModelDescriptor:
        return ModelDescriptor(task="encoder", input_multiple=32)

    def forward(self, rgb: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(rgb)
        features = []
        for index, block in enumerate(self.blocks):
            x = block(x)
            if index in TAPS:
                features.append(x)
        return features
