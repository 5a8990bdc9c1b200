"""Side-by-side sheet of held-out photos: gray input | old colouriser | new colouriser | truth.

    python tools/colour_sheet.py RUN_DIR --old OLD.pt --new colorsr-color-v6 \\
        --out docs/colour-before-after.png [--count 24] [--min-side 128]

The photos come from the run's validation hold-out (training photos it never trained on),
larger ones first (--min-side), seen through the evaluation protocol: the 64x64 luminance in,
its 64x64 colour photo as the truth. Each cell is enlarged 2x (nearest) so colours are easy to
judge; nothing is sharpened."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from colorsr_cli.calibrate import holdout_photos, protocol_views
from colorsr_cli.color import normalize_l, rgb_to_lab
from colorsr_cli.io import write_image_atomic
from colorsr_cli.train.color import merge_lab
from colorsr_cli.weights import load_model


def colourise(model: torch.nn.Module, gray: torch.Tensor) -> torch.Tensor:
    L = normalize_l(rgb_to_lab(gray)[:, :1])
    return merge_lab(L, model(L))


@torch.inference_mode()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--old", required=True, help="weight file or name")
    parser.add_argument("--new", required=True, help="weight file or name")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--count", type=int, default=24)
    parser.add_argument("--min-side", type=int, default=128)
    parser.add_argument("--labels", nargs=4, default=("gray input", "old default", "new default", "truth"))
    args = parser.parse_args()
    photos = holdout_photos(args.run_dir)
    photos = sorted(photos, key=lambda p: min(p.shape[:2]) < args.min_side)[:args.count]
    gray, truth = protocol_views(photos)
    columns = [gray, colourise(load_model(args.old, "color")[0].eval(), gray),
               colourise(load_model(args.new, "color")[0].eval(), gray), truth]
    cell, head, pairs = 128, 18, 2  # two photos per sheet row
    rows = (len(photos) + pairs - 1) // pairs
    sheet = Image.new("RGB", (cell * 4 * pairs + 8 * (pairs - 1), head + cell * rows), "white")
    draw = ImageDraw.Draw(sheet)
    for p in range(pairs):
        for c, label in enumerate(args.labels):
            draw.text(((4 * p + c) * cell + 8 * p + 4, 3), label, fill="black")
    for k in range(len(photos)):
        r, p = divmod(k, pairs)
        for c, images in enumerate(columns):
            tile = (images[k].permute(1, 2, 0).clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8)
            tile = Image.fromarray(tile).resize((cell, cell), Image.NEAREST)
            sheet.paste(tile, ((4 * p + c) * cell + 8 * p, head + r * cell))
    write_image_atomic(args.out, np.asarray(sheet, dtype=np.float32) / 255)
    print(f"{len(photos)} photos -> {args.out}")


if __name__ == "__main__":
    main()
