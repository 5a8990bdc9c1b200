"""Degraded low-resolution copies of real photos, with their truth, for measuring SR on inputs
like real scans (blur, area x1/4, noise, JPEG; colorsr_cli.degrade), reproducibly from a seed.

    python tools/degrade_photos.py PHOTOS OUT [--seed 0] [--size 256]

Each photo's centre crop (shorter side reduced to --size by area, then a --size square) is
written as OUT/hr/NAME.png, its degraded quarter-size copy as OUT/lr/NAME.png, and the strengths
drawn for every photo to OUT/degradations.json. Score a model against the truth with
`colorsr restore OUT/lr --sr-only --out OUT/sr` and compare OUT/sr with OUT/hr.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from colorsr_cli.degrade import degrade, draw_degradation
from colorsr_cli.evaluate import protocol_resize
from colorsr_cli.io import find_images, read_image, write_image_atomic


def centre_square(rgb: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) -> (size, size, 3): shorter side to size (area, bicubic to grow), centre crop."""
    h, w = rgb.shape[:2]
    f = size / min(h, w)
    scaled = protocol_resize(rgb, (max(size, round(w * f)), max(size, round(h * f))))
    y, x = (scaled.shape[0] - size) // 2, (scaled.shape[1] - size) // 2
    return scaled[y:y + size, x:x + size]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photos", nargs="+")
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=256, help="truth side, a multiple of 4")
    args = parser.parse_args()
    jobs, problems = find_images(args.photos)
    rng = np.random.default_rng(args.seed)
    record = {"seed": args.seed, "size": args.size, "photos": {}}
    for job in jobs:
        truth = centre_square(read_image(job.source).rgb, args.size)
        how = draw_degradation(rng)
        name = job.relative.with_suffix(".png")
        write_image_atomic(args.out / "hr" / name, truth)
        write_image_atomic(args.out / "lr" / name, degrade(truth, how, rng).astype(np.float32) / 255)
        record["photos"][str(name)] = how.as_dict()
    (args.out / "degradations.json").write_text(json.dumps(record, indent=1))
    for path, reason in problems:
        print(f"skipped {path}: {reason}")
    print(f"{len(jobs)} photos -> {args.out}/lr and {args.out}/hr")


if __name__ == "__main__":
    main()
