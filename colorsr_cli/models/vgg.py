"""VGG19 feature extractor for the SRGAN perceptual loss (Ledig et al.: 'VGG54', the
activations after the 4th conv of the 5th block). Layer names match torchvision's
`vgg19().features`, so the public ImageNet weight file loads directly."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

# torchvision's VGG19 'E' configuration: channels per conv, 'M' = max-pool.
_PLAN = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
         512, 512, 512, 512, "M")
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class VGGConfig:
    last_layer: int = 35  # index in torchvision's features: 35 = relu5_4 (SRGAN's VGG54)


class VGG19Features(nn.Module):
    """RGB (N, 3, H, W) in [0, 1] -> VGG19 activations at `last_layer` (frozen, eval mode)."""

    def __init__(self, config: VGGConfig = VGGConfig()):
        super().__init__()
        self.config = config
        layers: list[nn.Module] = []
        cin = 3
        for item in _PLAN:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(cin, item, 3, 1, 1), nn.ReLU(inplace=True)]
                cin = item
        self.features = nn.Sequential(*layers[: config.last_layer + 1])
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1))
        self.requires_grad_(False)

    def load_torchvision_state(self, state: dict[str, torch.Tensor]) -> None:
        """Load torchvision's vgg19 state dict (classifier keys and deeper layers ignored)."""
        own = self.state_dict()
        self.load_state_dict({k: v for k, v in state.items() if k in own}
                             | {"mean": own["mean"], "std": own["std"]})

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        return self.features((rgb - self.mean) / self.std)
