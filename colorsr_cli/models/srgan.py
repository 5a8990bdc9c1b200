"""SRGAN (Ledig et al. 2017): residual generator with PixelShuffle
upsampling, and the conv-BN-LeakyReLU discriminator with two fully connected layers."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from colorsr_cli.models.blocks import PixelShuffleUp, ResidualBlock, bicubic_upscale, conv_bn_act
from colorsr_cli.models.descriptor import ModelDescriptor


@dataclass(frozen=True)
class SRConfig:
    channels: int = 64
    blocks: int = 16
    head_kernel: int = 9
    tail_kernel: int = 9
    scale: int = 4  # a power of two: one PixelShuffle(2) stage per factor 2
    # Residual learning over bicubic (VDSR-style): the network adds detail to a bicubic
    # upscale instead of re-learning the upscale itself; converges far faster on a small budget.
    # False = plain SRGAN (sigmoid output).
    global_skip: bool = False
    # "stages": SRGAN's conv -> PixelShuffle(2) -> PReLU per factor 2, then the tail conv at
    # the output resolution. "lowres": the tail conv runs on the input grid to 3 * scale^2
    # channels and one PixelShuffle(scale) places them (ESPCN, Shi et al. 2016): all
    # convolutions at low resolution, the fast model's choice.
    upsampler: str = "stages"


class SRGenerator(nn.Module):
    """RGB (N, 3, h, w) in [0, 1] -> RGB (N, 3, scale*h, scale*w) in [0, 1]: sigmoid output, or
    with global_skip bicubic(x) + detail, clamped."""

    def __init__(self, config: SRConfig = SRConfig()):
        super().__init__()
        if config.scale not in (2, 4, 8):
            raise ValueError(f"scale must be 2, 4 or 8, got {config.scale}")
        if config.upsampler not in ("stages", "lowres"):
            raise ValueError(f"upsampler must be 'stages' or 'lowres', got {config.upsampler!r}")
        self.config = config
        c = config.channels
        self.head = nn.Sequential(nn.Conv2d(3, c, config.head_kernel, 1, config.head_kernel // 2),
                                  nn.PReLU(c))
        self.body = nn.Sequential(*(ResidualBlock(c) for _ in range(config.blocks)))
        self.body_tail = nn.Sequential(nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c))
        k = config.tail_kernel
        if config.upsampler == "stages":
            self.upsample = nn.Sequential(*(PixelShuffleUp(c) for _ in range(config.scale.bit_length() - 1)))
            self.tail = nn.Conv2d(c, 3, k, 1, k // 2)
        else:
            self.upsample = nn.Identity()
            self.tail = nn.Sequential(nn.Conv2d(c, 3 * config.scale**2, k, 1, k // 2),
                                      nn.PixelShuffle(config.scale))
            if config.global_skip:
                # Start as exactly bicubic. With its small fan-in (3x3 on the input grid) the
                # default init adds enough noise to start worse than bicubic (validation L1
                # 0.056 against 0.048 for a 64-channel model), and training takes thousands of
                # steps to undo it.
                nn.init.zeros_(self.tail[0].weight)
                nn.init.zeros_(self.tail[0].bias)

    @property
    def descriptor(self) -> ModelDescriptor:
        # On the input grid: the head's output (the outer skip), a residual block's input, two
        # conv outputs and an activation, about 6 x channels; at the output: the x scale result,
        # the bicubic base and their sum (3 x 3 channels). Measured for colorsr-sr-v2 (64
        # channels, x4, fp32): 1,887 bytes a pixel, against 2,112 counted here.
        c = self.config
        per_pixel = 4 * (6 * c.channels + 9 * c.scale**2)
        if c.upsampler == "stages":  # the upsampling stages' maps at 2x, 4x...: channels x 4 each
            per_pixel += 4 * 2 * c.channels * c.scale**2
        return ModelDescriptor(task="sr", scale=c.scale, inference_form=fold_tail_for_inference,
                               forward_bytes_per_pixel=per_pixel)

    def deepen_from(self, shallower: SRGenerator) -> None:
        """Take the weights of a generator of the same design with fewer residual blocks: its
        blocks become this one's first blocks and each extra block starts as the identity (its
        last BatchNorm scaled to zero), so this network computes what `shallower` computes and
        training goes on from there with more depth. ValueError when the designs differ in
        anything but depth."""
        theirs = shallower.config
        if theirs.blocks > self.config.blocks or replace(theirs, blocks=self.config.blocks) != self.config:
            raise ValueError(f"cannot deepen {self.config} from {theirs}: only the block count may differ")
        result = self.load_state_dict(shallower.state_dict(), strict=False)
        extra = tuple(f"body.{i}." for i in range(theirs.blocks, self.config.blocks))
        if result.unexpected_keys or not all(k.startswith(extra) for k in result.missing_keys):
            raise ValueError("cannot deepen: the parameters differ beyond the extra blocks "
                             f"({(result.unexpected_keys + result.missing_keys)[0]})")
        for block in self.body[theirs.blocks:]:
            last_bn = block.body[-1]
            nn.init.zeros_(last_bn.weight)
            nn.init.zeros_(last_bn.bias)

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        x = self.head(rgb * 2 - 1)
        x = x + self.body_tail(self.body(x))
        detail = self.tail(self.upsample(x))
        if not self.config.global_skip:
            return torch.sigmoid(detail)
        return (bicubic_upscale(rgb, self.config.scale) + detail).clamp(0, 1)


@dataclass(frozen=True)
class SRDiscriminatorConfig:
    width: int = 64
    pool: int = 6  # features are average-pooled to pool x pool, so any input size works
    fc: int = 1024


class SRDiscriminator(nn.Module):
    """RGB (N, 3, H, W) in [0, 1] -> (N, 1) real/fake logit."""

    def __init__(self, config: SRDiscriminatorConfig = SRDiscriminatorConfig()):
        super().__init__()
        self.config = config
        w = config.width
        act = lambda: nn.LeakyReLU(0.2, inplace=True)  # noqa: E731
        layers: list[nn.Module] = [conv_bn_act(3, w, act(), bn=False)]
        plan = [(w, 2), (2 * w, 1), (2 * w, 2), (4 * w, 1), (4 * w, 2), (8 * w, 1), (8 * w, 2)]
        cin = w
        for cout, stride in plan:
            layers.append(conv_bn_act(cin, cout, act(), stride=stride))
            cin = cout
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.AdaptiveAvgPool2d(config.pool), nn.Flatten(),
            nn.Linear(cin * config.pool**2, config.fc), act(), nn.Linear(config.fc, 1))

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(rgb * 2 - 1))

    def feature_maps(self, rgb: torch.Tensor) -> list[torch.Tensor]:
        """Intermediate activations, for the download-free feature-matching perceptual loss."""
        out, x = [], rgb * 2 - 1
        for layer in self.features:
            x = layer(x)
            out.append(x)
        return out


def fold_tail_for_inference(model: SRGenerator) -> SRGenerator:
    """In place: the last upsampling stage and the tail conv become one SubPixelTail (see
    blocks.fold_subpixel_tail); same outputs to float rounding. Returns the model."""
    from colorsr_cli.models.blocks import fold_subpixel_tail

    if (isinstance(model.tail, nn.Conv2d) and isinstance(model.upsample, nn.Sequential)
            and isinstance(model.upsample[-1], PixelShuffleUp)):
        model.upsample[-1] = fold_subpixel_tail(model.upsample[-1], model.tail)
        model.tail = nn.Identity()
    return model
