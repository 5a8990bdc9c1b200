"""Pick a colouriser's chroma gain (and, for a bins head, its annealed-mean temperature) on
held-out TRAINING photos, never on the test split.

    python tools/calibrate_chroma.py RUN_DIR [--checkpoint FILE] [--min-side 128]

Uses the run's own validation hold-out (the images its trainer never trained on: the same
deterministic split as `colorsr train color`), in the evaluation protocol's form (64x64
luminance in, the 64x64 colour photo as truth); --min-side keeps only the photos that were
larger than that, as users' photos are. Prints, per setting, hue / green / red hit, mean ab
error and PSNR against gray's, and colourfulness against the truth's; recommends the setting
with the highest hue hit whose colourfulness is within --colorfulness (default 0.8-1.0x the
truth's) and whose PSNR is no lower than gray's."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from colorsr_cli.color import lab_to_rgb, rgb_to_lab
from colorsr_cli.evaluate import protocol_pair
from colorsr_cli.export import generator_from_checkpoint
from colorsr_cli.metrics import ab_error, colorfulness, psnr
from colorsr_cli.models import arch_name_of, build_model, config_dict
from colorsr_cli.train.color import colour_placement
from colorsr_cli.train.data import PhotoFolder, split_photos
from colorsr_cli.train.runlog import Reporter
from colorsr_cli.weightfile import load_weight_file

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


@torch.inference_mode()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--checkpoint", type=Path,
                        help="a training checkpoint or a weight file (default: best.pt)")
    parser.add_argument("--limit", type=int, default=600)
    parser.add_argument("--min-side", type=int, default=0, help="only held-out photos this large")
    parser.add_argument("--colorfulness", type=float, nargs=2, default=(0.8, 1.0),
                        help="accepted colourfulness range, times the truth's")
    parser.add_argument("--gains", type=float, nargs="+", default=list(GAINS), help="gains to try")
    parser.add_argument("--temperatures", type=float, nargs="+", default=list(TEMPERATURES),
                        help="annealed-mean temperatures to try (bins heads)")
    args = parser.parse_args()
    if args.checkpoint:
        model, _ = generator_from_checkpoint(args.run_dir, args.checkpoint)
    else:
        model, _ = load_weight_file(args.run_dir / "best.pt")
    model = model.eval()
    photos = [p for p in holdout_photos(args.run_dir, args.limit) if min(p.shape[:2]) >= args.min_side]
    gray, truth = protocol_views(photos)
    L = rgb_to_lab(gray)[:, :1]
    target = colorfulness(truth).mean().item()
    base_psnr, base_ab = psnr(gray, truth).mean().item(), ab_error(gray, truth).mean().item()
    print(f"{len(gray)} held-out photos; gray: PSNR {base_psnr:.2f} dB, ab error {base_ab:.2f}; "
          f"truth colourfulness {target:.1f}")
    print("temp  gain  hue_hit  green  red    ab_err/gray  PSNR-gray  colourf/truth")
    temps = args.temperatures if getattr(model.config, "head", "regression") == "bins" else [None]
    best = None
    for temp in temps:
        if temp is not None:
            model = rebuilt(model, temperature=temp)
        ab = model(L / 50 - 1) * 110 / model.config.chroma_gain
        for gain in args.gains:
            out = lab_to_rgb(torch.cat((L, ab * gain), 1))
            p, e = psnr(out, truth).mean().item(), ab_error(out, truth).mean().item()
            c = colorfulness(out).mean().item() / target
            hits = colour_placement(out, truth)
            print(f"{temp or 0:4.2f}  {gain:4.2f}  {hits['hue_hit']:7.3f}  {hits['green_hit']:5.3f}  "
                  f"{hits['red_hit']:5.3f}  {e / base_ab:11.3f}  {p - base_psnr:+9.2f}  {c:13.2f}")
            ok = args.colorfulness[0] <= c <= args.colorfulness[1] and p >= base_psnr
            if ok and (best is None or hits["hue_hit"] > best[2]):
                best = (temp, gain, hits["hue_hit"])
    if best is None:
        print("no setting meets the colourfulness range with PSNR >= gray's")
    else:
        print(f"recommended: temperature {best[0]} chroma gain {best[1]} (hue hit {best[2]:.3f})")


def rebuilt(model: torch.nn.Module, **changes) -> torch.nn.Module:
    """The same colouriser with config fields changed (weights unchanged)."""
    copy = build_model(arch_name_of(model), config_dict(model) | changes)
    copy.load_state_dict(model.state_dict())
    return copy.eval()


if __name__ == "__main__":
    main()
