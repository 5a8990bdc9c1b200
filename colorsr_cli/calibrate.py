"""Choosing a colouriser's chroma gain (and, for a bins head, its annealed-mean temperature) on
held-out TRAINING photos, never on the test split: `colorsr calibrate RUN_DIR`.

The photos are the run's own validation hold-out (the images its trainer never trained on, the
same deterministic split as `colorsr train color`), seen through the evaluation protocol (64x64
luminance in, the 64x64 colour photo as truth). Each setting is scored by hue / green / red hit,
the share of colourful pixels left gray, mean ab error and PSNR against gray's, and
colourfulness against the truth's; the recommended setting has the highest hue hit among those
whose colourfulness lies in the accepted range and whose PSNR is no lower than gray's."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from colorsr_cli.color import lab_to_rgb, rgb_to_lab
from colorsr_cli.evaluate import protocol_pair
from colorsr_cli.metrics import ab_error, colorfulness, psnr
from colorsr_cli.models import arch_name_of, build_model, config_dict
from colorsr_cli.train.color import colour_placement
from colorsr_cli.train.data import PhotoFolder, split_photos
from colorsr_cli.train.runlog import Reporter

GAINS = (1.6, 1.4, 1.2, 1.1, 1.0, 0.9, 0.8)
TEMPERATURES = (0.25, 0.38, 0.5, 0.7)


def validation_set(run_dir: Path) -> tuple[PhotoFolder, list[int]]:
    """The folder a colour run validated on and the indices of its photos there: its --val folder,
    or its held-out share of its data (the same deterministic split as train_color)."""
    recipe = json.loads((run_dir / "recipe.json").read_text())
    photos = PhotoFolder(Path(recipe["val"] or recipe["data"]), Reporter())
    if recipe["val"]:
        return photos, list(range(len(photos)))
    return photos, split_photos(photos, recipe["val_fraction"], recipe["holdout_seed"],
                                recipe.get("holdout_min_side", 0))[1]


def holdout_photos(run_dir: Path, limit: int | None = None) -> list[np.ndarray]:
    """The photos a colour run validated on (validation_set), decoded."""
    photos, indices = validation_set(run_dir)
    return [photos.load(i) for i in indices[:limit]]


def protocol_views(photos: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """The protocol's (gray 64x64 input, its colour 64x64 truth) for each photo, batched."""
    pairs = [protocol_pair(img) for img in photos]
    truth = torch.stack([torch.nn.functional.interpolate(t[None], size=(64, 64), mode="area")[0]
                         for t, _ in pairs])
    return torch.stack([g for _, g in pairs]), truth


@dataclass(frozen=True)
class Setting:
    """One scored setting: temperature (None for a regression head), gain, and its measures."""

    temperature: float | None
    gain: float
    hue_hit: float
    green_hit: float
    red_hit: float
    left_gray: float  # share of the truth's colourful pixels given no visible colour
    ab_error_vs_gray: float  # mean ab error / gray's
    psnr_minus_gray: float  # dB
    colourfulness_ratio: float  # / the truth's


@dataclass(frozen=True)
class Calibration:
    photos: int
    gray_psnr: float
    gray_ab_error: float
    truth_colourfulness: float
    settings: list[Setting]
    recommended: Setting | None


@torch.inference_mode()
def calibrate(model: torch.nn.Module, gray: torch.Tensor, truth: torch.Tensor,
              gains=GAINS, temperatures=TEMPERATURES, colourfulness_range=(0.8, 1.0)) -> Calibration:
    """Score every (temperature, gain) of a colouriser on (gray input, truth) photos."""
    L = rgb_to_lab(gray)[:, :1]
    target = colorfulness(truth).mean().item()
    base_psnr, base_ab = psnr(gray, truth).mean().item(), ab_error(gray, truth).mean().item()
    temps = list(temperatures) if getattr(model.config, "head", "regression") == "bins" else [None]
    settings, best = [], None
    for temp in temps:
        if temp is not None:
            model = rebuilt(model, temperature=temp)
        ab = model.eval()(L / 50 - 1) * 110 / model.config.chroma_gain
        for gain in gains:
            out = lab_to_rgb(torch.cat((L, ab * gain), 1))
            p, e = psnr(out, truth).mean().item(), ab_error(out, truth).mean().item()
            hits = colour_placement(out, truth)
            s = Setting(temp, float(gain), hits["hue_hit"], hits["green_hit"], hits["red_hit"],
                        hits["left_gray"], e / base_ab, p - base_psnr,
                        colorfulness(out).mean().item() / target)
            settings.append(s)
            lo, hi = colourfulness_range
            if lo <= s.colourfulness_ratio <= hi and s.psnr_minus_gray >= 0 and (
                    best is None or s.hue_hit > best.hue_hit):
                best = s
    return Calibration(len(gray), base_psnr, base_ab, target, settings, best)


def rebuilt(model: torch.nn.Module, **changes) -> torch.nn.Module:
    """The same colouriser with config fields changed (weights unchanged)."""
    copy = build_model(arch_name_of(model), config_dict(model) | changes)
    copy.load_state_dict(model.state_dict())
    return copy.eval()
