"""Compare super-resolution weight files on a run's held-out TRAINING photos (never the test
split): PSNR / SSIM (RGB and Y) of x4 outputs against the HR centre crops, next to bicubic.

    python tools/sr_holdout.py RUN_DIR WEIGHTS [WEIGHTS ...] [--crop 192] [--lr-kernel bicubic]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from colorsr_cli.metrics import psnr, ssim
from colorsr_cli.pipeline import RestoreOptions, Restorer, resize
from colorsr_cli.train.data import PhotoFolder, split_holdout
from colorsr_cli.train.runlog import Reporter
from colorsr_cli.train.sr import hr_lr_pair
from colorsr_cli.weightfile import load_weight_file


def scores(out: torch.Tensor, hr: torch.Tensor) -> str:
    return "  ".join(f"{name} {fn(out, hr).mean().item():.4f}" for name, fn in
                     (("psnr", psnr), ("psnr_y", lambda a, b: psnr(a, b, "y")),
                      ("ssim", ssim), ("ssim_y", lambda a, b: ssim(a, b, "y"))))


@torch.inference_mode()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("weights", type=Path, nargs="+")
    parser.add_argument("--crop", type=int, default=192)
    parser.add_argument("--lr-kernel", choices=("area", "bicubic"), default="area",
                        help="how the LR input is made (the protocol's area, or the SR papers' bicubic)")
    args = parser.parse_args()
    recipe = json.loads((args.run_dir / "recipe.json").read_text())
    photos = PhotoFolder(Path(recipe["data"]), Reporter(), min_side=recipe["hr_size"])
    _, val = split_holdout(len(photos), recipe["val_fraction"], recipe["holdout_seed"], hi=200)
    pairs = []
    for i in val:
        img = photos.load(i)
        if min(img.shape[:2]) >= args.crop:
            pairs.append(hr_lr_pair(img, args.crop, 4, None, args.lr_kernel))
    lr, hr = torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])
    bicubic = torch.stack([resize(x, tuple(hr.shape[-2:]), "bicubic").clamp(0, 1) for x in lr])
    print(f"{len(hr)} held-out crops of {args.crop}x{args.crop}, LR by {args.lr_kernel} x1/4")
    print(f"bicubic: {scores(bicubic, hr)}")
    for path in args.weights:
        model, meta = load_weight_file(path)
        restorer = Restorer(None, model, RestoreOptions(mode="sr-only", tile=0, batch_size=8))
        out = torch.stack(restorer.restore(list(lr)))
        print(f"{path.name} (step {meta.get('step')}): {scores(out, hr)}")


if __name__ == "__main__":
    main()
