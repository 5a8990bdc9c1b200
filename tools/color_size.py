"""Which working resolution should the colouriser use on photos larger than 64x64? Measured on
held-out TRAINING photos (the SR run's hold-out: photos of 256 px and more), never the test split.

    python tools/color_size.py SR_RUN_DIR COLOR_WEIGHTS [--sizes 64 96 128 192 256]

Input: the 256x256 protocol truth reduced to luminance; colour-only restore at scale 1 with each
--color-size; prints mean ab error, PSNR and colourfulness against the truth."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from colorsr_cli.evaluate import gray_of, protocol_pair
from colorsr_cli.metrics import ab_error, colorfulness, psnr
from colorsr_cli.pipeline import RestoreOptions, Restorer
from colorsr_cli.train.data import PhotoFolder, split_holdout
from colorsr_cli.train.runlog import Reporter
from colorsr_cli.weightfile import load_weight_file


@torch.inference_mode()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sr_run_dir", type=Path)
    parser.add_argument("color_weights", type=Path)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 96, 128, 192, 256])
    args = parser.parse_args()
    recipe = json.loads((args.sr_run_dir / "recipe.json").read_text())
    photos = PhotoFolder(Path(recipe["data"]), Reporter(), min_side=256)
    _, val = split_holdout(len(photos), recipe["val_fraction"], recipe["holdout_seed"], hi=200)
    truth = torch.stack([protocol_pair(photos.load(i))[0] for i in val])
    gray = gray_of(truth)
    model, _ = load_weight_file(args.color_weights)
    print(f"{len(truth)} held-out photos at 256x256; gray: ab error {ab_error(gray, truth).mean():.2f}, "
          f"PSNR {psnr(gray, truth).mean():.2f}; truth colourfulness {colorfulness(truth).mean():.1f}")
    for size in args.sizes:
        restorer = Restorer(model, None, RestoreOptions(mode="color-only", scale=1, color_size=size))
        out = torch.stack(restorer.restore(list(gray)))
        print(f"--color-size {size:3d}: ab error {ab_error(out, truth).mean():.2f}  "
              f"PSNR {psnr(out, truth).mean():.2f}  colourfulness {colorfulness(out).mean():.1f}")


if __name__ == "__main__":
    main()
