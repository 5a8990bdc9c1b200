"""pix2pix-style colouriser (seed report section 3.1): U-Net generator L -> ab and a
conditional patch discriminator on concat(L, ab)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from colorsr_cli.models.blocks import conv_bn_act
from colorsr_cli.models.descriptor import ModelDescriptor


@dataclass(frozen=True)
class ColorizerConfig:
    width: int = 32  # channels of the first encoder level; doubled at every level
    depth: int = 3  # number of 2x downsamplings (seed: 3, for 64x64 inputs)
    batch_norm: bool = True
    # Calibration applied to the predicted chroma, set at export time from held-out training
    # photos (not from test data): an under-trained GAN's confident but wrong hues cost more than
    # they give, and a gain below 1 trades some colourfulness for accuracy.
    chroma_gain: float = 1.0


class _DoubleConv(nn.Sequential):
    def __init__(self, cin: int, cout: int, bn: bool):
        super().__init__(conv_bn_act(cin, cout, nn.ReLU(inplace=True), bn=bn),
                         conv_bn_act(cout, cout, nn.ReLU(inplace=True), bn=bn))


class ColorizerUNet(nn.Module):
    """U-Net generator. Input: normalised L (N, 1, H, W) in [-1, 1], H and W multiples of
    2**depth. Output: normalised ab (N, 2, H, W) in [-1, 1] (times 110 gives Lab units)."""

    def __init__(self, config: ColorizerConfig = ColorizerConfig()):
        super().__init__()
        self.config = config
        w, bn = config.width, config.batch_norm
        widths = [w * 2**i for i in range(config.depth + 1)]
        self.down = nn.ModuleList()
        cin = 1
        for cout in widths[:-1]:
            self.down.append(_DoubleConv(cin, cout, bn))
            cin = cout
        self.pool = nn.MaxPool2d(2)
        self.bottleneck = _DoubleConv(widths[-2], widths[-1], bn)
        self.up = nn.ModuleList()
        self.merge = nn.ModuleList()
        for deep, skip in zip(widths[:0:-1], widths[-2::-1]):
            self.up.append(nn.Sequential(nn.ConvTranspose2d(deep, skip, 2, 2), nn.ReLU(inplace=True)))
            self.merge.append(_DoubleConv(skip * 2, skip, bn))
        self.head = nn.Conv2d(widths[0], 2, 1)

    @property
    def multiple(self) -> int:
        return 2**self.config.depth

    @property
    def descriptor(self) -> ModelDescriptor:
        return ModelDescriptor(task="color", input_multiple=self.multiple)

    def forward(self, lightness: torch.Tensor) -> torch.Tensor:
        skips = []
        x = lightness
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottleneck(x)
        for up, merge, skip in zip(self.up, self.merge, reversed(skips)):
            x = merge(torch.cat((up(x), skip), dim=1))
        return torch.tanh(self.head(x)) * self.config.chroma_gain


@dataclass(frozen=True)
class ColorizerEnsembleConfig:
    # Each member's ColorizerConfig as a plain dict (its own chroma_gain is 1: the ensemble's
    # gain applies to the average).
    members: tuple[dict, ...] = ()
    chroma_gain: float = 1.0

    def __post_init__(self) -> None:
        members = tuple(dict(m) for m in self.members)  # a list from JSON -> a tuple
        if not members:
            raise ValueError("an ensemble needs at least one member")
        for m in members:
            if float(m.get("chroma_gain", 1.0)) != 1.0:
                raise ValueError("ensemble members carry no chroma gain of their own (the "
                                 "ensemble's applies to their average)")
        object.__setattr__(self, "members", members)


class ColorizerEnsemble(nn.Module):
    """Several colourisers whose chroma predictions are averaged (before the tanh's range is
    scaled by chroma_gain): independently trained colourisers err differently, and the average
    of their ab is closer to the truth than either (measured in docs/models.md). Same input and
    output as ColorizerUNet."""

    def __init__(self, config: ColorizerEnsembleConfig):
        super().__init__()
        self.config = config
        self.members = nn.ModuleList(ColorizerUNet(ColorizerConfig(**m)) for m in config.members)

    @property
    def multiple(self) -> int:
        return max(m.multiple for m in self.members)

    @property
    def descriptor(self) -> ModelDescriptor:
        return ModelDescriptor(task="color", input_multiple=self.multiple)

    def forward(self, lightness: torch.Tensor) -> torch.Tensor:
        total = self.members[0](lightness)
        for member in self.members[1:]:
            total = total + member(lightness)
        return total * (self.config.chroma_gain / len(self.members))


@dataclass(frozen=True)
class PatchDiscriminatorConfig:
    width: int = 64
    layers: int = 3  # stride-2 convolutions; 3 gives a 8x8 patch map on 64x64 inputs
    sigmoid: bool = True  # the seed's D outputs a probability, trained with MSE


class PatchDiscriminator(nn.Module):
    """Conditional discriminator: (N, 3, H, W) = concat(L, ab), normalised -> (N, 1, h, w)
    real/fake scores per patch."""

    def __init__(self, config: PatchDiscriminatorConfig = PatchDiscriminatorConfig()):
        super().__init__()
        self.config = config
        act = nn.LeakyReLU(0.2, inplace=True)
        layers: list[nn.Module] = [nn.Conv2d(3, config.width, 4, 2, 1), act]
        cin = config.width
        for i in range(1, config.layers):
            cout = config.width * 2 ** min(i, 3)
            layers += [nn.Conv2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout), act]
            cin = cout
        layers += [nn.Conv2d(cin, cin, 3, 1, 1, bias=False), nn.BatchNorm2d(cin), act,
                   nn.Conv2d(cin, 1, 3, 1, 1)]
        if config.sigmoid:
            layers.append(nn.Sigmoid())
        self.net = nn.Sequential(*layers)

    def forward(self, lab: torch.Tensor) -> torch.Tensor:
        return self.net(lab)
