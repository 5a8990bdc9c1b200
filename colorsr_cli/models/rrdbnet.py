"""RRDBNet (ESRGAN, Wang et al. 2018; the generator of Real-ESRGAN, Wang et al. 2021): a trunk
of residual-in-residual dense blocks on the input grid, then two nearest x2 upsamplings each
followed by a conv. Parameter names follow BasicSR (conv_first, body.N.rdbK.convJ, conv_body,
conv_up1, conv_up2, conv_hr, conv_last), so the published `.pth` files load as they are."""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from colorsr_cli.models.descriptor import ModelDescriptor

# Real-ESRGAN's own tools (RealESRGANer, realesrgan-ncnn-vulkan) reflect-pad the image by 10
# pixels before the network and crop afterwards, so borders look like the published results.
EDGE_PAD = 10
_UNSHUFFLE = {4: 1, 2: 2, 1: 4}  # scale -> pixel-unshuffle factor on the input (x2 and x1 models)


@dataclass(frozen=True)
class RRDBConfig:
    in_channels: int = 3
    out_channels: int = 3
    features: int = 64
    blocks: int = 23
    growth: int = 32
    scale: int = 4  # 4: as published for x4plus; 2 and 1 pixel-unshuffle the input first


class ResidualDenseBlock(nn.Module):
    """Five 3x3 convs, each seeing the block input and all earlier outputs (dense), LeakyReLU 0.2
    between them; output = x + 0.2 * conv5(...), the residual scaled down for stable training."""

    def __init__(self, features: int, growth: int):
        super().__init__()
        for j in range(5):
            cout = features if j == 4 else growth
            setattr(self, f"conv{j + 1}", nn.Conv2d(features + j * growth, cout, 3, 1, 1))
        self.lrelu = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x]
        for j in range(1, 5):
            feats.append(self.lrelu(getattr(self, f"conv{j}")(torch.cat(feats, 1))))
        return x + 0.2 * self.conv5(torch.cat(feats, 1))


class RRDB(nn.Module):
    """Three dense blocks in sequence with a 0.2-scaled residual around them."""

    def __init__(self, features: int, growth: int):
        super().__init__()
        self.rdb1 = ResidualDenseBlock(features, growth)
        self.rdb2 = ResidualDenseBlock(features, growth)
        self.rdb3 = ResidualDenseBlock(features, growth)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 0.2 * self.rdb3(self.rdb2(self.rdb1(x)))


class RRDBNet(nn.Module):
    """RGB (N, 3, h, w) in [0, 1] -> RGB (N, 3, 4h, 4w) in [0, 1] for scale 4 (clamped; the
    published network is unbounded). Scale 2 (1) needs h and w multiples of 2 (4)."""

    def __init__(self, config: RRDBConfig = RRDBConfig()):
        super().__init__()
        if config.scale not in _UNSHUFFLE:
            raise ValueError(f"scale must be 1, 2 or 4, got {config.scale}")
        self.config = config
        c, g = config.features, config.growth
        self.conv_first = nn.Conv2d(config.in_channels * _UNSHUFFLE[config.scale] ** 2, c, 3, 1, 1)
        self.body = nn.Sequential(*(RRDB(c, g) for _ in range(config.blocks)))
        self.conv_body = nn.Conv2d(c, c, 3, 1, 1)
        self.conv_up1 = nn.Conv2d(c, c, 3, 1, 1)
        self.conv_up2 = nn.Conv2d(c, c, 3, 1, 1)
        self.conv_hr = nn.Conv2d(c, c, 3, 1, 1)
        self.conv_last = nn.Conv2d(c, config.out_channels, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(0.2, inplace=True)

    @property
    def descriptor(self) -> ModelDescriptor:
        # The peak is at the output grid (scale^2 pixels per input pixel): the last upsampling's
        # input and its conv output, 64 features each; the dense blocks' concatenations on the
        # network's own grid are smaller. Measured for Real-ESRGAN x4plus (fp32): 5,876 bytes a
        # pixel, against 8,064 counted here.
        c = self.config
        trunk = 8 * (c.features + 4 * c.growth) // _UNSHUFFLE[c.scale] ** 2
        per_pixel = 4 * c.scale**2 * (3 * c.features // 2 + 6) + trunk
        return ModelDescriptor(task="sr", scale=c.scale, input_multiple=_UNSHUFFLE[c.scale],
                               edge_pad=EDGE_PAD, forward_bytes_per_pixel=per_pixel)

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        factor = _UNSHUFFLE[self.config.scale]
        x = F.pixel_unshuffle(rgb, factor) if factor > 1 else rgb
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        feat = self.lrelu(self.conv_up1(F.interpolate(feat, scale_factor=2, mode="nearest")))
        feat = self.lrelu(self.conv_up2(F.interpolate(feat, scale_factor=2, mode="nearest")))
        return self.conv_last(self.lrelu(self.conv_hr(feat))).clamp(0, 1)


# The original ESRGAN repository's names for the same parameters (RRDB_ESRGAN_x4.pth).
_ESRGAN_NAMES = [(r"^RRDB_trunk\.", "body."), (r"\.RDB(\d)\.", r".rdb\1."), (r"^trunk_conv\.", "conv_body."),
                 (r"^upconv1\.", "conv_up1."), (r"^upconv2\.", "conv_up2."), (r"^HRconv\.", "conv_hr.")]


def adopt_published_state_dict(state: dict[str, torch.Tensor]
                               ) -> tuple[RRDBConfig, dict[str, torch.Tensor]] | None:
    """A published ESRGAN / Real-ESRGAN state dict (BasicSR or original ESRGAN names) ->
    (its config, the state dict in this module's names); None when it is not an RRDBNet. The
    config is read from the tensor shapes; loading it then checks every other shape."""
    renamed = {}
    for key, value in state.items():
        for pattern, repl in _ESRGAN_NAMES:
            key = re.sub(pattern, repl, key)
        renamed[key] = value
    first, last = renamed.get("conv_first.weight"), renamed.get("conv_last.weight")
    grow = renamed.get("body.0.rdb1.conv1.weight")
    if first is None or last is None or grow is None or first.dim() != 4:
        return None
    blocks = 1 + max(int(m.group(1)) for k in renamed if (m := re.match(r"body\.(\d+)\.", k)))
    out_channels = last.shape[0]
    unshuffle = {out_channels * f * f: f for f in _UNSHUFFLE.values()}.get(first.shape[1])
    if unshuffle is None:
        return None
    scale = {f: s for s, f in _UNSHUFFLE.items()}[unshuffle]
    config = RRDBConfig(in_channels=first.shape[1] // unshuffle**2, out_channels=out_channels,
                        features=first.shape[0], blocks=blocks, growth=grow.shape[0], scale=scale)
    return config, renamed
