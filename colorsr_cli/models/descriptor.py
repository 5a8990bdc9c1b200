"""What the pipeline needs to know about a generator, declared by the network itself (as
spandrel's ModelDescriptor does), so the pipeline never tests a model's type."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn


def _unchanged(model: nn.Module) -> nn.Module:
    return model


@dataclass(frozen=True)
class ModelDescriptor:
    """task: "color" or "sr". scale: output side / input side. input_multiple: the input's
    height and width must be multiples of it (the pipeline pads, then crops the output).
    edge_pad: input pixels reflect-padded around the whole image before it is tiled (and cropped
    from the output), for networks trained or published that way. inference_form: turns an
    eval-mode copy into its faster form in place, with the same outputs to float rounding.
    forward_bytes_per_pixel: the most memory one forward pass holds (activations and output, in
    float32), per input pixel, counted from the config as an upper bound of the measured peak;
    the memory estimate (colorsr_cli.memory) sizes tiles and batches by it."""

    task: str
    scale: int = 1
    input_multiple: int = 1
    edge_pad: int = 0
    inference_form: Callable[[nn.Module], nn.Module] = _unchanged
    forward_bytes_per_pixel: int = 0
