"""Quantised chroma: the ab plane as classes (Zhang, Isola and Efros 2016, "Colorful Image
Colorization").

Predicting a distribution over ab bins instead of one ab value lets a colouriser say "red or
green" for an ambiguous object; a regression loss averages such modes into brown. Pure, batched
torch functions; ab in Lab units (about [-110, 110]).

- `gamut_bins`: the centres of the 10x10 ab cells that hold at least one sRGB colour at some
  lightness (262 cells for D65 sRGB; the paper counts 313 with its own gamut test).
- `soft_encode`: a truth ab map as a distribution over its 5 nearest bins (Gaussian, sigma 5).
- `rebalance_weights`: per-bin loss weights from the colour prior of the training photos,
  smoothed and mixed 50/50 with uniform, inverted, normalised to mean 1 under the prior.
- `annealed_mean`: a predicted distribution back to one ab, sharpened by a temperature (0.38 in
  the paper: between the mean, which is desaturated, and the mode, which is patchy).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import torch
import torch.nn.functional as F

from colorsr_cli.color import lab_to_rgb

BIN_SIZE = 10.0
GRID = torch.arange(-110.0, 111.0, BIN_SIZE)  # candidate centres on each of the a and b axes


@functools.lru_cache(maxsize=1)
def _gamut_mask() -> torch.Tensor:
    """(23, 23) bool over GRID x GRID: the cell around (a, b) holds an sRGB colour for some L."""
    n = len(GRID)
    a, b = torch.meshgrid(GRID, GRID, indexing="ij")
    lightness = torch.linspace(0, 100, 101).view(-1, 1, 1).expand(-1, n, n)
    inside = torch.zeros(n, n, dtype=torch.bool)
    offsets = torch.linspace(-BIN_SIZE / 2, BIN_SIZE / 2, 6)
    for da in offsets:
        for db in offsets:
            lab = torch.stack((lightness, (a + da).expand(101, -1, -1), (b + db).expand(101, -1, -1)), 1)
            rgb = lab_to_rgb(lab.double(), clip=False)
            inside |= ((rgb >= 0) & (rgb <= 1)).all(1).any(0)
    return inside


def gamut_bins() -> torch.Tensor:
    """(Q, 2) ab centres (Lab units) of the in-gamut cells, a-major order; Q = 262."""
    a, b = torch.meshgrid(GRID, GRID, indexing="ij")
    mask = _gamut_mask()
    return torch.stack((a[mask], b[mask]), 1).float()


@functools.lru_cache(maxsize=1)
def _cell_to_bin() -> torch.Tensor:
    """(23, 23) long: for every GRID cell, the index (into gamut_bins) of the nearest in-gamut
    bin (itself when in gamut; -1 would never be needed: every cell has a nearest)."""
    bins = gamut_bins()
    a, b = torch.meshgrid(GRID, GRID, indexing="ij")
    cells = torch.stack((a.flatten(), b.flatten()), 1)
    return torch.cdist(cells, bins).argmin(1).view(len(GRID), len(GRID))


def _cell_of(ab: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """ab (N, 2, H, W) in Lab units -> the GRID cell indices (row, column), each (N, H, W)."""
    idx = torch.round((ab.float() - GRID[0]) / BIN_SIZE).long().clamp(0, len(GRID) - 1)
    return idx[:, 0], idx[:, 1]


def nearest_bin(ab: torch.Tensor) -> torch.Tensor:
    """ab (N, 2, H, W) in Lab units -> (N, H, W) index into gamut_bins of the bin whose cell holds
    the colour (for the rare colour whose cell is out of gamut, the nearest in-gamut bin)."""
    row, col = _cell_of(ab)
    return _cell_to_bin().to(ab.device)[row, col]


@functools.lru_cache(maxsize=1)
def _cell_bin_or_none() -> torch.Tensor:
    """(23, 23) long: the gamut_bins index of every in-gamut GRID cell, -1 elsewhere."""
    table = torch.full((len(GRID), len(GRID)), -1, dtype=torch.long)
    table[_gamut_mask()] = torch.arange(int(_gamut_mask().sum()))
    return table


def soft_encode(ab: torch.Tensor, neighbours: int = 5, sigma: float = 5.0) -> torch.Tensor:
    """ab (N, 2, H, W) in Lab units -> (N, Q, H, W) target distributions over gamut_bins:
    Gaussian weights (sigma in ab units) on the `neighbours` nearest bins, summing to 1 at
    every pixel. On the regular grid those lie among the 5x5 cells around the colour's own
    (for colours inside the sRGB gamut; one far outside it gets its nearest bin)."""
    n, _, h, w = ab.shape
    size = len(GRID)
    bins = gamut_bins().to(ab.device)
    table = _cell_bin_or_none().to(ab.device)
    row, col = _cell_of(ab)
    steps = torch.arange(-2, 3, device=ab.device)
    rows = (row[..., None, None] + steps.view(-1, 1)).expand(-1, -1, -1, 5, 5)
    cols = (col[..., None, None] + steps.view(1, -1)).expand(-1, -1, -1, 5, 5)
    inside = (rows >= 0) & (rows < size) & (cols >= 0) & (cols < size)
    cand = table[rows.clamp(0, size - 1), cols.clamp(0, size - 1)].masked_fill(~inside, -1).flatten(-2)
    # A colour far outside the gamut has no in-gamut cell around it: its nearest bin stands in.
    valid = cand >= 0
    lone = ~valid.any(-1, keepdim=True)
    cand = torch.cat((cand, nearest_bin(ab)[..., None]), -1)
    valid = torch.cat((valid, lone), -1)
    cand = cand.clamp(min=0)
    d2 = (bins[cand] - ab.float().permute(0, 2, 3, 1)[..., None, :]).square().sum(-1)
    d2 = d2.masked_fill(~valid, float("inf"))
    near, k = d2.topk(neighbours, dim=-1, largest=False)
    weights = torch.softmax(-near / (2 * sigma**2), dim=-1)
    target = torch.zeros(n, h, w, len(bins), dtype=weights.dtype, device=ab.device)
    target.scatter_add_(-1, cand.gather(-1, k), weights)  # add: invalid slots carry 0
    return target.permute(0, 3, 1, 2)


def bin_histogram(ab: torch.Tensor) -> torch.Tensor:
    """(Q,) pixel counts of ab (N, 2, H, W) per gamut bin (float64, for accumulation)."""
    return torch.bincount(nearest_bin(ab).flatten(), minlength=len(gamut_bins())).double()


def smooth_prior(counts: torch.Tensor, bins: torch.Tensor, sigma: float = 5.0) -> torch.Tensor:
    """Bin counts (Q,) -> a probability (Q,) blurred over the ab plane with a Gaussian of sigma
    ab units, so that a colour seen in few photos is not an isolated spike."""
    p = counts.double() / counts.sum().clamp(min=1)
    d2 = torch.cdist(bins.double(), bins.double()).square()
    kernel = torch.exp(-d2 / (2 * sigma**2))
    smoothed = kernel @ p
    return smoothed / smoothed.sum()


def rebalance_weights(prior: torch.Tensor, mix: float = 0.5) -> torch.Tensor:
    """(Q,) per-bin weights w ~ 1 / ((1 - mix) * prior + mix / Q), scaled so that the expected
    weight under the prior is 1: rare, saturated colours count more in the loss."""
    q = len(prior)
    w = 1.0 / ((1 - mix) * prior + mix / q)
    return (w / (prior * w).sum()).float()


def annealed_mean(logits: torch.Tensor, bins: torch.Tensor, temperature: float = 0.38) -> torch.Tensor:
    """Logits (N, Q, H, W) -> ab (N, 2, H, W) in Lab units: the mean of the distribution
    re-normalised from p**(1/T) (softmax of logits / T)."""
    probs = torch.softmax(logits.float() / temperature, dim=1)
    return torch.einsum("nqhw,qc->nchw", probs, bins.to(probs.dtype))


def rebalanced_cross_entropy(logits: torch.Tensor, target: torch.Tensor, pixel_weight: torch.Tensor
                             ) -> torch.Tensor:
    """Mean over pixels of pixel_weight * cross-entropy(target distribution, softmax(logits));
    logits and target (N, Q, H, W), pixel_weight (N, H, W)."""
    ce = -(target * F.log_softmax(logits.float(), dim=1)).sum(1)
    return (ce * pixel_weight).mean()


PRIOR_FILE = Path(__file__).parent / "data" / "ab_prior.json"


@functools.lru_cache(maxsize=1)
def shipped_prior() -> torch.Tensor:
    """(Q,) smoothed colour prior of the photos the shipped colourisers were trained on (pixel
    counts per gamut bin, made by tools/ab_prior.py), for the rebalanced metrics."""
    counts = json.loads(PRIOR_FILE.read_text())["counts"]
    bins = gamut_bins()
    if len(counts) != len(bins):
        raise ValueError(f"{PRIOR_FILE}: {len(counts)} bins, expected {len(bins)}")
    return smooth_prior(torch.tensor(counts, dtype=torch.float64), bins).float()
