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


def _spans(length: int, tile: int, pad: int, multiple: int = 1) -> list[tuple[int, int]]:
    """1-D windows covering [0, length): as few cores as tiles of at most `tile` need, split
    evenly (a 200-pixel side with tile 128 gets two cores of 100, not 128 + 72), each widened by
    `pad` of context on both sides and shifted inwards at the ends.

    For a network that needs its input in multiples of `multiple` (a pixel-unshuffle), the
    windows are laid out the same way over the length padded to the multiple, with cores and
    context rounded up to it, and then cut at the image's end: every window starts on a multiple
    and pads to the same size, and one cut by the end is padded as a whole-image pass is, so
    each sees that pass's pixel grid and its output agrees with it."""
    padded = round_up(length, multiple)
    count = -(-padded // tile)
    core = round_up(-(-padded // count), multiple)
    context = round_up(pad, multiple)
    size = min(core + 2 * context, padded)
    # Context wider than the cores can shift two windows onto the same span (61 px, tile 20,
    # pad 16): one is kept, since equal windows with equal weights blend to the same result.
    return list(dict.fromkeys((start, min(start + size, length))
                              for start in (min(max(k * core - context, 0), padded - size)
                                            for k in range(count))))


def round_up(value: int, multiple: int) -> int:
    """value rounded up to a multiple of `multiple`."""
    return -(-value // multiple) * multiple


def split_into_tiles(height: int, width: int, tile: int, pad: int, multiple: int = 1) -> list[Window]:
    """Windows covering a height x width image; one window when the image fits in a tile.
    With multiple > 1, windows are aligned to it (see _spans)."""
    if tile <= 0:
        return [Window(0, height, 0, width)]
    return [Window(y0, y1, x0, x1) for y0, y1 in _spans(height, tile, pad, multiple)
            for x0, x1 in _spans(width, tile, pad, multiple)]


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


_UNCOVERED = "tiling left pixels uncovered (tile/pad inconsistent, or windows out of order)"


class TileCanvas:
    """Accumulates weighted window outputs of one (C, H, W) image into (C, H*scale, W*scale).

    dtype float32: the whole weighted sum is kept and divided at the end. dtype uint8: the result
    is a uint8 canvas in [0, 255] and only a band of rows stays in float: windows must come in
    split_into_tiles' order (row by row), and the rows above a new row of windows, which no later
    window reaches, are divided by their weight, rounded into the canvas and dropped from the band.
    The float part is then about one row of tiles instead of the whole output (a 24 MP scan at 4x:
    1.2 GB of uint8 canvas plus a 0.8 GB band with 512-pixel tiles, against 6.1 GB of float sums)."""

    def __init__(self, channels: int, height: int, width: int, pad: int, scale: int,
                 device=None, dtype: torch.dtype = torch.float32):
        self.height, self.width, self.pad, self.scale = height, width, pad, scale
        self.dtype = dtype
        banded = dtype == torch.uint8
        rows = 0 if banded else height * scale
        self.canvas = (torch.empty(channels, height * scale, width * scale, dtype=dtype, device=device)
                       if banded else None)
        self.top = 0  # output row of the band's first row
        self.sum = torch.zeros(channels, rows, width * scale, device=device)
        self.weight = torch.zeros(1, rows, width * scale, device=device)

    def add(self, win: Window, output: torch.Tensor) -> None:
        s = self.scale
        wgt = window_weight(win, self.height, self.width, self.pad, s, output.device)
        y0, y1 = win.y0 * s, win.y1 * s
        if self.canvas is not None:
            self._settle_rows_above(y0)
            self._extend_band_to(y1)
        region = (slice(None), slice(y0 - self.top, y1 - self.top), slice(win.x0 * s, win.x1 * s))
        self.sum[region] += output.float() * wgt
        self.weight[region] += wgt

    def result(self) -> torch.Tensor:
        if self.canvas is None:
            if (self.weight <= 0).any():
                raise RuntimeError(_UNCOVERED)
            return self.sum / self.weight
        self._settle_rows_above(self.height * self.scale)
        return self.canvas

    def _settle_rows_above(self, row: int) -> None:
        """Move the band's rows above output row `row` into the uint8 canvas."""
        n = min(row, self.top + self.sum.shape[1]) - self.top
        weight = self.weight[:, :max(n, 0)]
        if row > self.top + self.sum.shape[1] or (weight <= 0).any():
            raise RuntimeError(_UNCOVERED)
        if n <= 0:
            return
        value = (self.sum[:, :n] / weight).clamp_(0, 1).mul_(255).round_()
        self.canvas[:, self.top:self.top + n] = value.to(torch.uint8)
        self.sum, self.weight = self.sum[:, n:], self.weight[:, n:]
        self.top += n

    def _extend_band_to(self, row: int) -> None:
        """Grow the band down to output row `row` (a new tensor: the settled rows' memory goes)."""
        rows = row - self.top
        if rows <= self.sum.shape[1]:
            return
        have = self.sum.shape[1]
        grown = torch.zeros(self.sum.shape[0], rows, self.sum.shape[2], device=self.sum.device)
        weight = torch.zeros(1, rows, self.sum.shape[2], device=self.sum.device)
        grown[:, :have], weight[:, :have] = self.sum, self.weight
        self.sum, self.weight = grown, weight
