"""Small building blocks shared by the networks (written once, composed by the models)."""

from __future__ import annotations

from torch import nn


def conv_bn_act(cin: int, cout: int, act: nn.Module, kernel: int = 3, stride: int = 1,
                bn: bool = True) -> nn.Sequential:
    """Conv -> (BatchNorm) -> activation; 'same' padding for odd kernels."""
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=not bn)]
    if bn:
        layers.append(nn.BatchNorm2d(cout))
    layers.append(act)
    return nn.Sequential(*layers)


class ResidualBlock(nn.Module):
    """SRGAN residual block: x + BN(conv(PReLU(BN(conv(x)))))."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, 1, 1, bias=False),
            nn.BatchNorm2d(channels),
            nn.PReLU(channels),
            nn.Conv2d(channels, channels, 3, 1, 1, bias=False),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x):
        return x + self.body(x)


class PixelShuffleUp(nn.Module):
    """Conv to 4x channels -> PixelShuffle(2) -> PReLU: doubles height and width."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels * 4, 3, 1, 1)
        self.shuffle = nn.PixelShuffle(2)
        self.act = nn.PReLU(channels)

    def forward(self, x):
        return self.act(self.shuffle(self.conv(x)))


def fuse_batchnorm(model: nn.Module) -> nn.Module:
    """Fold every BatchNorm2d that directly follows a Conv2d inside an nn.Sequential into that
    conv (eval-mode statistics), in place; returns the model. Inference only: saves one pass
    over every feature map per BN layer and gives the same outputs to float rounding."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for module in model.modules():
        if not isinstance(module, nn.Sequential):
            continue
        for i in range(len(module) - 1):
            conv, bn = module[i], module[i + 1]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                module[i] = fuse_conv_bn_eval(conv.eval(), bn.eval())
                module[i + 1] = nn.Identity()
    return model
