"""Architecture registry: a weight file names its architecture and carries its config, and
this table turns that into a module. Adding a network is one entry here. A network whose
weights are also published in another project's layout declares how to adopt them (`adopt`),
so such files load without being converted first."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import nn

from colorsr_cli.models.colorizer import (
    ColorizerConfig,
    ColorizerEnsemble,
    ColorizerEnsembleConfig,
    ColorizerMobileNet,
    ColorizerUNet,
    MobileColorizerConfig,
    PatchDiscriminator,
    PatchDiscriminatorConfig,
)
from colorsr_cli.models.descriptor import ModelDescriptor
from colorsr_cli.models.mobilenet import MobileNetV2Config, MobileNetV2Features
from colorsr_cli.models.rrdbnet import RRDBConfig, RRDBNet, adopt_published_state_dict
from colorsr_cli.models.srgan import SRConfig, SRDiscriminator, SRDiscriminatorConfig, SRGenerator
from colorsr_cli.models.vgg import VGG19Features, VGGConfig


class Architecture(NamedTuple):
    module: type[nn.Module]
    config: type
    task: str  # "color" or "sr" for generators; "critic" for discriminators; "perceptual"
    # A published state dict in its own project's layout -> (config, state dict in our names),
    # or None when the state dict is not this architecture's.
    adopt: Callable[[dict[str, torch.Tensor]], tuple[Any, dict[str, torch.Tensor]] | None] | None = None


ARCHITECTURES: dict[str, Architecture] = {
    "colorizer_unet": Architecture(ColorizerUNet, ColorizerConfig, "color"),
    "colorizer_ensemble": Architecture(ColorizerEnsemble, ColorizerEnsembleConfig, "color"),
    "colorizer_mobilenet": Architecture(ColorizerMobileNet, MobileColorizerConfig, "color"),
    "patch_discriminator": Architecture(PatchDiscriminator, PatchDiscriminatorConfig, "critic"),
    "srgan_generator": Architecture(SRGenerator, SRConfig, "sr"),
    "rrdbnet": Architecture(RRDBNet, RRDBConfig, "sr", adopt_published_state_dict),
    "srgan_discriminator": Architecture(SRDiscriminator, SRDiscriminatorConfig, "critic"),
    "vgg19_features": Architecture(VGG19Features, VGGConfig, "perceptual"),
    "mobilenet_v2_features": Architecture(MobileNetV2Features, MobileNetV2Config, "encoder"),
}


def arch_name_of(model: nn.Module) -> str:
    for name, arch in ARCHITECTURES.items():
        if type(model) is arch.module:
            return name
    raise KeyError(f"{type(model).__name__} is not a registered architecture")


def build_model(arch: str, config: dict[str, Any] | None = None) -> nn.Module:
    """Construct a registered architecture from a plain config dict (unknown keys rejected)."""
    if arch not in ARCHITECTURES:
        raise KeyError(f"unknown architecture {arch!r}; known: {', '.join(ARCHITECTURES)}")
    entry = ARCHITECTURES[arch]
    return entry.module(entry.config(**(config or {})))


def config_dict(model: nn.Module) -> dict[str, Any]:
    return dataclasses.asdict(model.config)


__all__ = [
    "ARCHITECTURES", "Architecture", "ColorizerConfig", "ColorizerEnsemble", "ColorizerEnsembleConfig",
    "ColorizerMobileNet", "ColorizerUNet", "MobileColorizerConfig", "MobileNetV2Config",
    "MobileNetV2Features", "ModelDescriptor", "PatchDiscriminator", "RRDBConfig", "RRDBNet",
    "PatchDiscriminatorConfig", "SRConfig", "SRDiscriminator", "SRDiscriminatorConfig",
    "SRGenerator", "VGG19Features", "VGGConfig", "arch_name_of", "build_model", "config_dict",
]
