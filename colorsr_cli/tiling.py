"""Overlapping tiles for super-resolving images of any size in fixed-size batches.

Every window of an image has the same size (windows at the right/bottom edge are shifted
inwards rather than shrunk), so windows stack into batches. Each window's output is weighted
by a feathered mask that is zero within `pad/2` of an edge shared with a neighbour (where
zero padding inside the network makes outputs differ from a single pass) and rises to one at
`pad`; overlapping outputs are averaged with those weights, so there are no seams and the
result matches one whole-image pass to within rounding."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Window:
    """A window in input pixels: rows [y0, y1), columns [x0, x1)."""

    y0: int
    y1: int
    x0: int
    x1: int

    @property
    def shape(self) -> tuple[int, int]:
        return self.y1 - self.y0, self.x1 - self.x0


def _spans(length: int, tile: int, pad: int) -> list[tuple[int, int]]:
    """1-D windows of one size covering [0, length): as few cores as tiles of at most `tile`
    need, split evenly (a 200-pixel side with tile 128 gets two cores of 100, not 128 + 72),
    each widened by `pad` of context on both sides and shifted inwards at the ends."""
    count = -(-length // tile)
    core = -(-length // count)
    size = min(core + 2 * pad, length)
    return [(start, start + size)
            for start in (min(max(k * core - pad, 0), length - size) for k in range(count))]


def split_into_tiles(height: int, width: int, tile: int, pad: int) -> list[Window]:
    """Windows covering a height x width image; one window when the image fits in a tile."""
    if tile <= 0:
        return [Window(0, height, 0, width)]
    return [Window(y0, y1, x0, x1) for y0, y1 in _spans(height, tile, pad)
            for x0, x1 in _spans(width, tile, pad)]


def _ramp(length: int, lo_inner: bool, hi_inner: bool, pad: int, device) -> torch.Tensor:
    """1-D weights over a window of `length` output pixels: zero for the first pad/2 and one
    from pad on, at each end that borders a neighbouring window (inner edge)."""
    pos = torch.arange(length, device=device, dtype=torch.float32) + 0.5
    w = torch.ones(length, device=device)
    if pad > 0:
        half = pad / 2
        ramp_lo = ((pos - half) / half).clamp(0, 1)
        ramp_hi = ((length - pos - half) / half).clamp(0, 1)
        if lo_inner:
            w = w * ramp_lo
        if hi_inner:
            w = w * ramp_hi
    return w


def window_weight(win: Window, height: int, width: int, pad: int, scale: int,
                  device=None) -> torch.Tensor:
    """(1, h*scale, w*scale) blending weights of a window's output."""
    h, w = win.shape
    wy = _ramp(h * scale, win.y0 > 0, win.y1 < height, pad * scale, device)
    wx = _ramp(w * scale, win.x0 > 0, win.x1 < width, pad * scale, device)
    return (wy[:, None] * wx[None, :])[None]


class TileCanvas:
    """Accumulates weighted window outputs of one (C, H, W) image into (C, H*scale, W*scale)."""

    def __init__(self, channels: int, height: int, width: int, pad: int, scale: int,
                 device=None):
        self.height, self.width, self.pad, self.scale = height, width, pad, scale
        self.sum = torch.zeros(channels, height * scale, width * scale, device=device)
        self.weight = torch.zeros(1, height * scale, width * scale, device=device)

    def add(self, win: Window, output: torch.Tensor) -> None:
        s = self.scale
        wgt = window_weight(win, self.height, self.width, self.pad, s, output.device)
        region = (slice(None), slice(win.y0 * s, win.y1 * s), slice(win.x0 * s, win.x1 * s))
        self.sum[region] += output.float() * wgt
        self.weight[region] += wgt

    def result(self) -> torch.Tensor:
        if (self.weight <= 0).any():
            raise RuntimeError("tiling left pixels uncovered (tile/pad inconsistent)")
        return self.sum / self.weight
