"""pix2pix-style colouriser (Isola et al. 2017): U-Net generator L -> ab and a
conditional patch discriminator on concat(L, ab)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from colorsr_cli.chroma_bins import annealed_mean
from colorsr_cli.color import AB_SCALE, denormalize_l, lab_to_rgb
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
    # "regression": a tanh head predicts ab directly (pix2pix). "bins": the head predicts a
    # distribution over `bins` quantised ab cells (chroma_bins.gamut_bins), decoded by the
    # annealed mean at `temperature` (Zhang et al. 2016); a regression loss averages the
    # plausible colours of an object into brown, a distribution keeps them apart.
    head: str = "regression"
    bins: int = 0
    temperature: float = 0.38
    # A bins head predicts at 1/head_stride of the input size and its decoded ab is enlarged
    # (bilinear): chroma varies slowly, the lightness keeps the detail, and the 262-way
    # distribution costs head_stride**2 times less (Zhang et al. predict at 1/4).
    head_stride: int = 1
    # Image-level features (Iizuka et al. 2016, "Let there be Color!"): the bottleneck is pooled
    # to one vector per image, passed through a small MLP and fused back at every position, so
    # each pixel's colour can depend on what the whole picture shows. `classes` > 0 adds an
    # auxiliary classifier on that vector (or on the pooled bottleneck without global_features),
    # trained on labelled photo folders so the encoder learns what is in the picture; unused at
    # inference.
    global_features: bool = False
    classes: int = 0

    def __post_init__(self) -> None:
        if self.head not in ("regression", "bins"):
            raise ValueError(f"unknown colouriser head {self.head!r} (regression or bins)")
        if self.head == "bins" and self.bins < 2:
            raise ValueError("a bins head needs the number of ab bins")
        if self.head_stride not in [2**k for k in range(self.depth + 1)]:
            raise ValueError(f"head_stride must be a power of 2 up to 2**depth, not {self.head_stride}")
        if self.head == "regression" and self.head_stride != 1:
            raise ValueError("head_stride applies to a bins head; a regression head predicts at full size")


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
        # The decoder climbs back to 1/head_stride of the input size: a coarser bins head skips
        # the finest levels.
        self.levels_skipped = config.head_stride.bit_length() - 1
        self.up = nn.ModuleList()
        self.merge = nn.ModuleList()
        for deep, skip in list(zip(widths[:0:-1], widths[-2::-1]))[:config.depth - self.levels_skipped]:
            self.up.append(nn.Sequential(nn.ConvTranspose2d(deep, skip, 2, 2), nn.ReLU(inplace=True)))
            self.merge.append(_DoubleConv(skip * 2, skip, bn))
        deepest = widths[-1]
        if config.global_features:
            self.global_mlp = nn.Sequential(nn.Linear(deepest, deepest), nn.ReLU(inplace=True),
                                            nn.Linear(deepest, deepest), nn.ReLU(inplace=True))
            self.fuse = conv_bn_act(deepest * 2, deepest, nn.ReLU(inplace=True), bn=bn, kernel=1)
        if config.classes:
            self.classifier = nn.Linear(deepest, config.classes)
        if config.head == "bins":
            self.head = nn.Conv2d(widths[self.levels_skipped], config.bins, 1)
            # The bin centres travel in the weight file (Lab units, (bins, 2)).
            self.register_buffer("ab_bins", torch.zeros(config.bins, 2))
        else:
            self.head = nn.Conv2d(widths[0], 2, 1)

    @property
    def multiple(self) -> int:
        return 2**self.config.depth

    @property
    def descriptor(self) -> ModelDescriptor:
        # At full resolution: the first level's skip, its two conv outputs and the merge's
        # concatenation (about 6 x width channels), and a bins head's logits with the annealed
        # mean's temporaries. Measured for colorsr-color-v5 (two members of width 32, fp32; v6
        # has its design): 308 bytes a pixel, against 784 counted here.
        c = self.config
        per_pixel = 4 * (6 * c.width + 3 * c.bins // c.head_stride**2)
        return ModelDescriptor(task="color", input_multiple=self.multiple, forward_bytes_per_pixel=per_pixel)

    def forward(self, lightness: torch.Tensor, details: bool = False):
        """Normalised ab (N, 2, H, W). With details=True (training), a dict with "ab" and, for a
        bins head, "logits" (N, bins, H, W); with a class head, "classes" (N, classes)."""
        skips = []
        x = lightness
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottleneck(x)
        out = {}
        g = x.mean((2, 3))
        if self.config.global_features:
            g = self.global_mlp(g)
            x = self.fuse(torch.cat((x, g[:, :, None, None].expand_as(x)), 1))
        if self.config.classes:
            out["classes"] = self.classifier(g)
        for up, merge, skip in zip(self.up, self.merge, reversed(skips)):
            x = merge(torch.cat((up(x), skip), dim=1))
        head = self.head(x)
        if self.config.head == "bins":
            out["logits"] = head
            ab = annealed_mean(head, self.ab_bins, self.config.temperature) / AB_SCALE
            if self.levels_skipped:
                ab = F.interpolate(ab, size=lightness.shape[-2:], mode="bilinear", align_corners=False)
        else:
            ab = torch.tanh(head)
        out["ab"] = ab * self.config.chroma_gain
        return out if details else out["ab"]


@dataclass(frozen=True)
class ColorizerEnsembleConfig:
    # Each member's config as a plain dict (its own chroma_gain is 1: the ensemble's gain applies
    # to the average), with "arch" naming a single-colouriser design of MEMBER_DESIGNS (absent:
    # the U-Net, as in files written before members could differ).
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
            if m.get("arch", "colorizer_unet") not in MEMBER_DESIGNS:
                raise ValueError(f"unknown ensemble member design {m['arch']!r} "
                                 f"(one of {', '.join(MEMBER_DESIGNS)})")
        object.__setattr__(self, "members", members)


def _member(config: dict) -> nn.Module:
    config = dict(config)
    module, config_type = MEMBER_DESIGNS[config.pop("arch", "colorizer_unet")]
    return module(config_type(**config))


class ColorizerEnsemble(nn.Module):
    """Several colourisers whose chroma predictions are averaged (before the tanh's range is
    scaled by chroma_gain): independently trained colourisers err differently, and the average
    of their ab is closer to the truth than either (measured in docs/models.md). Same input and
    output as ColorizerUNet."""

    def __init__(self, config: ColorizerEnsembleConfig):
        super().__init__()
        self.config = config
        self.members = nn.ModuleList(_member(m) for m in config.members)

    @property
    def multiple(self) -> int:
        return math.lcm(*(m.multiple for m in self.members))

    @property
    def descriptor(self) -> ModelDescriptor:
        # Members run one after another: the largest member's peak plus the running sum of ab.
        per_pixel = max(m.descriptor.forward_bytes_per_pixel for m in self.members) + 16
        return ModelDescriptor(task="color", input_multiple=self.multiple, forward_bytes_per_pixel=per_pixel)

    def forward(self, lightness: torch.Tensor) -> torch.Tensor:
        total = self.members[0](lightness)
        for member in self.members[1:]:
            total = total + member(lightness)
        return total * (self.config.chroma_gain / len(self.members))


@dataclass(frozen=True)
class PatchDiscriminatorConfig:
    width: int = 64
    layers: int = 3  # stride-2 convolutions; 3 gives a 8x8 patch map on 64x64 inputs
    sigmoid: bool = True  # D outputs a probability, trained with MSE


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


@dataclass(frozen=True)
class MobileColorizerConfig:
    width: int = 32  # decoder channels at the input's resolution; 2x, 4x, 4x deeper down
    global_features: bool = False  # Iizuka et al.'s image-level fusion, on the deepest features
    classes: int = 0  # auxiliary classifier on the pooled deepest features (training only)
    chroma_gain: float = 1.0


class ColorizerMobileNet(nn.Module):
    """U-Net whose encoder is an ImageNet-trained MobileNetV2 (models/mobilenet.py): the gray
    photo, enlarged 2x so that its stride-32 features are not a few pixels, goes through the
    encoder; a decoder climbs back to the input's size through its stride-16..2 features and the
    L channel itself. The encoder's batch norm keeps its ImageNet statistics (always in eval
    mode). Same input and output as ColorizerUNet; H and W multiples of 16."""

    def __init__(self, config: MobileColorizerConfig = MobileColorizerConfig()):
        super().__init__()
        from colorsr_cli.models.mobilenet import TAP_CHANNELS, MobileNetV2Features

        self.config = config
        w = config.width
        self.encoder = MobileNetV2Features().eval()
        f1, f2, f4, f8, f16 = TAP_CHANNELS  # at input strides 1, 2, 4, 8, 16
        act = nn.ReLU(inplace=True)
        self.bottom = conv_bn_act(f16, 4 * w, act, kernel=1)
        if config.global_features:
            self.global_mlp = nn.Sequential(nn.Linear(f16, 4 * w), act, nn.Linear(4 * w, 4 * w), act)
            self.fuse = conv_bn_act(8 * w, 4 * w, act, kernel=1)
        if config.classes:
            self.classifier = nn.Linear(f16, config.classes)
        self.merge = nn.ModuleList([
            _DoubleConv(4 * w + f8, 4 * w, True), _DoubleConv(4 * w + f4, 2 * w, True),
            _DoubleConv(2 * w + f2, w, True), _DoubleConv(w + f1 + 1, w, True)])
        self.head = nn.Conv2d(w, 2, 1)

    @property
    def multiple(self) -> int:
        return 16

    @property
    def descriptor(self) -> ModelDescriptor:
        # The encoder's first stage on the 2x enlarged photo (the enlarged RGB, the stem, its
        # depthwise output, the 96-channel expansion and its padded copy: about 340 floats per
        # input pixel) and the decoder's finest level (about 4 x width). Measured in fp32 on a
        # 768x768 input: 1,347, 1,359 and 1,608 bytes a pixel at width 16, 32 and 64.
        per_pixel = 4 * (340 + 4 * self.config.width)
        return ModelDescriptor(task="color", input_multiple=self.multiple, forward_bytes_per_pixel=per_pixel)

    def train(self, mode: bool = True) -> ColorizerMobileNet:
        super().train(mode)
        self.encoder.eval()
        return self

    def forward(self, lightness: torch.Tensor, details: bool = False):
        gray = _gray_srgb(lightness)
        enlarged = F.interpolate(gray, scale_factor=2, mode="bilinear", align_corners=False)
        f1, f2, f4, f8, f16 = self.encoder((enlarged * 2 - 1).expand(-1, 3, -1, -1))
        x = self.bottom(f16)
        out = {}
        g = f16.mean((2, 3))
        if self.config.global_features:
            x = self.fuse(torch.cat((x, self.global_mlp(g)[:, :, None, None].expand_as(x)), 1))
        if self.config.classes:
            out["classes"] = self.classifier(g)
        for merge, skip in zip(self.merge, (f8, f4, f2, torch.cat((f1, lightness), 1))):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = merge(torch.cat((x, skip), 1))
        out["ab"] = torch.tanh(self.head(x)) * self.config.chroma_gain
        return out if details else out["ab"]


def _gray_srgb(lightness: torch.Tensor) -> torch.Tensor:
    """Normalised L (N, 1, H, W) in [-1, 1] -> the sRGB gray value (N, 1, H, W) in [0, 1] of that
    lightness: what an encoder trained on photos saw."""
    L = denormalize_l(lightness.float())
    return lab_to_rgb(torch.cat((L, torch.zeros_like(L), torch.zeros_like(L)), 1))[:, :1]


# The single colourisers an ensemble may hold: architecture name -> (module, config).
MEMBER_DESIGNS: dict[str, tuple[type[nn.Module], type]] = {
    "colorizer_unet": (ColorizerUNet, ColorizerConfig),
    "colorizer_mobilenet": (ColorizerMobileNet, MobileColorizerConfig),
}
