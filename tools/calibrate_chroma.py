"""Pick a colouriser's chroma gain on held-out TRAINING photos (never on the test split).

    python tools/calibrate_chroma.py RUN_DIR [--checkpoint FILE] [--min-colorfulness 0.45]

Uses the run's own validation hold-out (the images its trainer never trained on: the same
deterministic split as `colorsr train color` without --val), in the evaluation protocol's
form (64x64 luminance in, the 64x64 colour photo as truth). Prints PSNR, mean ab error and
colourfulness for a range of gains and recommends the gain with the lowest ab error whose
colourfulness stays at or above --min-colorfulness times the truth's."""

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
from colorsr_cli.train.common import PhotoFolder, Reporter, holdout_seed_of, split_holdout
from colorsr_cli.weightfile import load_weight_file

GAINS = (1.3, 1.2, 1.1, 1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4)


def validation_set(run_dir: Path) -> tuple[PhotoFolder, list[int]]:
    """The folder a colour run validated on and the indices of its photos there: its --val folder,
    or its held-out share of its data (the same deterministic split as train_color)."""
    recipe = json.loads((run_dir / "recipe.json").read_text())
    photos = PhotoFolder(Path(recipe["val"] or recipe["data"]), Reporter())
    if recipe["val"]:
        return photos, list(range(len(photos)))
    return photos, split_holdout(len(photos), recipe["val_fraction"], holdout_seed_of(recipe))[1]


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
    parser.add_argument("--limit", type=int, default=500)
    parser.add_argument("--min-colorfulness", type=float, default=0.45)
    parser.add_argument("--tta", action="store_true", help="average with the mirrored prediction")
    parser.add_argument("--gains", type=float, nargs="+", default=list(GAINS), help="gains to try")
    args = parser.parse_args()
    if args.checkpoint:
        model, _ = generator_from_checkpoint(args.run_dir, args.checkpoint)
    else:
        model, _ = load_weight_file(args.run_dir / "best.pt")
    gray, truth = protocol_views(holdout_photos(args.run_dir, args.limit))
    L = rgb_to_lab(gray)[:, :1]
    x = L / 50 - 1
    ab = model(x) * 110
    if args.tta:
        ab = (ab + model(x.flip(-1)).flip(-1) * 110) / 2
    target = colorfulness(truth).mean().item()
    base_psnr, base_ab = psnr(gray, truth).mean().item(), ab_error(gray, truth).mean().item()
    print(f"{len(gray)} held-out photos; gray: PSNR {base_psnr:.2f} dB, ab error {base_ab:.2f}; "
          f"truth colourfulness {target:.1f}")
    print("gain  PSNR(dB)  vs gray  ab_error  vs gray  colourfulness  vs truth")
    best = None
    for gain in args.gains:
        out = lab_to_rgb(torch.cat((L, ab * gain), 1))
        p = psnr(out, truth).mean().item()
        e = ab_error(out, truth).mean().item()
        c = colorfulness(out).mean().item()
        print(f"{gain:4.2f}  {p:8.2f}  {p - base_psnr:+7.2f}  {e:8.2f}  {e / base_ab:7.3f}  "
              f"{c:13.1f}  {c / target:8.2f}")
        if c >= args.min_colorfulness * target and (best is None or e < best[1]):
            best = (gain, e)
    print(f"recommended chroma gain: {best[0] if best else 'none meets the colourfulness floor'}")


if __name__ == "__main__":
    main()
