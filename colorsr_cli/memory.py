"""How much memory restoring one image takes, and the SR tile size and per-pass batch that keep it
within a budget.

The estimate adds up what the restore path holds at its fullest moment: the decoded input (float
RGB, kept until the output is written), the colouriser's full-resolution working images (L, the
upsampled chroma, Lab and the RGB result), the SR tiles in flight (the stacked batch, its
channels-last copy, the network's own peak per input pixel as its descriptor declares it, the
x4 outputs), the uint8 output canvas with its band of float rows, and the encoder's copies of the
output. Each stage is estimated on its own; the peak is the largest.

The budget defaults to most of the memory available when the run starts, at most 8 GiB;
COLORSR_MEMORY (e.g. `6G`, `1500M`, or bytes) sets it."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from colorsr_cli.errors import ColorsrError
from colorsr_cli.tiling import round_up, split_into_tiles

DEFAULT_CAP = 8 << 30  # the most a default budget plans on, bytes: other programs keep the rest
AVAILABLE_SHARE = 0.75  # of the memory available when the run starts
MIN_TILE = 64  # the smallest tile a budget lowers to: below it the overlap costs over 2x the work

# Bytes per pixel of each stage's resident arrays (float32 = 4 bytes a channel; uint8 = 1).
INPUT = 12  # the decoded RGB, float32, per input pixel
DECODE = 13  # Pillow's decoded image and the float array, per input pixel, besides INPUT
COLOUR_WORK = 36  # L (1 channel), upsampled ab (2), Lab (3) and the RGB result (3), float32
SR_INPUT = 12  # the (colourised) RGB the tiles are cut from, float32
CANVAS = 3  # the uint8 output, per output pixel
ENCODE = 7  # the (H, W, 3) uint8 copy of the canvas and Pillow's 4-byte pixels
BAND = 16  # the canvas band: weighted sum (3 channels) and weight (1), float32, per output pixel
TILE_COPIES = 24  # a tile in the stacked batch and its channels-last copy, per input pixel
TILE_OUTPUT = 24  # a tile's output at the network's scale and a reduced or weighted copy, per pixel


@dataclass(frozen=True)
class RestorePlan:
    """What the estimate needs to know about a restore. sr_bytes / color_bytes: the networks'
    peak bytes per input pixel of one forward pass (ModelDescriptor.forward_bytes_per_pixel;
    0 when the network does not run). sr_scale: the SR network's own scale; scale: the output's.
    color_pixels: the colouriser's working size (pixels). edge_pad, multiple: the SR network's
    border padding and input multiple. batch_pixels: the per-pass cap in input pixels (0: none)."""

    scale: int
    sr_scale: int = 4
    sr_bytes: int = 0
    color_bytes: int = 0
    color_pixels: int = 128 * 128
    tile_pad: int = 16
    edge_pad: int = 0
    multiple: int = 1
    batch_pixels: int = 0


def per_pass(batch_size: int, batch_pixels: int, tile_pixels: int) -> int:
    """How many inputs of tile_pixels go through a network together: batch_size, capped at
    batch_pixels input pixels where set, at least one."""
    n = max(1, batch_size)
    if batch_pixels:
        n = min(n, max(1, batch_pixels // max(1, tile_pixels)))
    return n


def restore_peak_bytes(height: int, width: int, plan: RestorePlan, tile: int, batch_size: int) -> int:
    """Estimated peak bytes of restoring one height x width image with SR tiles of `tile` input
    pixels (0: the whole image as one tile) and at most batch_size tiles per pass."""
    pixels, out_pixels = height * width, height * width * plan.scale**2
    resident = INPUT * pixels
    decode = resident + DECODE * pixels
    colour = 0
    if plan.color_bytes:
        colour = resident + COLOUR_WORK * pixels + plan.color_bytes * plan.color_pixels
    encode = resident + (CANVAS + ENCODE) * out_pixels
    sr = 0
    if plan.sr_bytes:
        h, w = height + 2 * plan.edge_pad, width + 2 * plan.edge_pad  # as the SR stage sees it
        source = SR_INPUT * (pixels + h * w * bool(plan.edge_pad))
        windows = split_into_tiles(h, w, tile, plan.tile_pad, plan.multiple)
        win_h, win_w = (round_up(side, plan.multiple) for side in windows[0].shape)
        n = min(len(windows), per_pass(batch_size, plan.batch_pixels, win_h * win_w))
        # The network's output is at its own scale, then reduced to the output's.
        tiles = n * win_h * win_w * (TILE_COPIES + plan.sr_bytes + TILE_OUTPUT * plan.sr_scale**2)
        band = BAND * win_h * plan.scale * w * plan.scale if len(windows) > 1 else 0
        sr = resident + source + CANVAS * out_pixels + band + tiles
    return max(decode, colour, sr, encode)


def fit_tiling(height: int, width: int, plan: RestorePlan, tile: int, batch_size: int, budget: int,
               tile_fixed: bool = False, batch_fixed: bool = False) -> tuple[int, int]:
    """(tile, batch_size) for one image: the given ones when their estimate is within budget (or
    budget is 0), else the largest that fit, lowering the batch before the tile (halving each;
    the tile down to MIN_TILE). A fixed tile or batch stays as it is. When nothing fits: the
    smallest, the least memory this restore can take."""
    if not budget:
        return tile, batch_size
    tiles = [tile] if tile_fixed or tile <= MIN_TILE else _halvings(tile, MIN_TILE)
    batches = [batch_size] if batch_fixed else _halvings(batch_size, 1)
    for t in tiles:
        for b in batches:
            if restore_peak_bytes(height, width, plan, t, b) <= budget:
                return t, b
    return tiles[-1], batches[-1]


def _halvings(start: int, floor: int) -> list[int]:
    values = [start]
    while values[-1] // 2 >= floor:
        values.append(values[-1] // 2)
    return values


def parse_bytes(text: str) -> int:
    """'6G', '6GiB', '1500M', '512k' or a plain number of bytes -> bytes (binary multiples)."""
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", text, re.IGNORECASE)
    if found is None:
        raise ColorsrError(f"COLORSR_MEMORY={text!r}: expected a size such as 6G, 1500M or a number of bytes")
    number, unit = found.groups()
    return int(float(number) * 1024 ** " kmgt".index(unit.lower() or " "))


def default_budget(device: torch.device | str = "cpu") -> int:
    """Bytes a restore on `device` plans to stay within: COLORSR_MEMORY if set; on a GPU, most
    of its free memory; on a CPU, most of the available memory (and of a cgroup limit's
    headroom), at most DEFAULT_CAP."""
    given = os.environ.get("COLORSR_MEMORY")
    if given:
        return parse_bytes(given)
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0] * AVAILABLE_SHARE)
    available = available_memory()
    return DEFAULT_CAP if available is None else min(DEFAULT_CAP, int(available * AVAILABLE_SHARE))


def available_memory() -> int | None:
    """Bytes of memory this process may still take: MemAvailable, and within a cgroup (v2) limit
    its headroom, whichever is less; None where neither can be read."""
    found = []
    try:
        line = re.search(r"^MemAvailable:\s+(\d+) kB", Path("/proc/meminfo").read_text(), re.M)
        if line:
            found.append(int(line.group(1)) * 1024)
    except OSError:
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            found.append(int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text()))
    except (OSError, ValueError):
        pass
    if not found and hasattr(os, "sysconf"):
        try:
            found.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError):
            pass
    return max(0, min(found)) if found else None
