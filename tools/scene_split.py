"""Folders of links for fine-tuning a colouriser on the larger (scene) training photos, with the
hold-out kept apart from what the shipped colourisers trained on.

    python tools/scene_split.py DATA/train OUT [--collections bsds500 coco128 ...]

OUT/val: the photos of the chosen collections that fall in the 2 % hold-out of a `colorsr train
color --data DATA/train` run (holdout seed 0, the split of `colorsr_cli.train.data.split_photos`),
which the members of colorsr-color-v4, -v5 and -v6 never trained on. OUT/train: every other
photo of those collections. Both mirror DATA/train's layout with symbolic links, so the photos
are neither copied nor modified. Then `colorsr train color --data OUT/train --val OUT/val ...`."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from colorsr_cli.train.data import PhotoFolder, split_photos
from colorsr_cli.train.runlog import Reporter

LARGER = ("bsds500", "coco128", "imagenet1k", "urban100", "sun80")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="the training photos (DATA/train)")
    parser.add_argument("out", type=Path, help="new folder for train/ and val/")
    parser.add_argument("--collections", nargs="+", default=LARGER)
    parser.add_argument("--val-fraction", type=float, default=0.02)
    parser.add_argument("--holdout-seed", type=int, default=0)
    args = parser.parse_args()
    if args.out.exists():
        parser.error(f"{args.out}: already exists; choose a new folder")
    root = args.data.resolve()
    photos = PhotoFolder(root, Reporter())
    held = set(split_photos(photos, args.val_fraction, args.holdout_seed)[1])
    counts = {"train": 0, "val": 0}
    for i, path in enumerate(photos.paths):
        rel = Path(path).resolve().relative_to(root)
        if rel.parts[0] not in args.collections:
            continue
        part = "val" if i in held else "train"
        link = args.out / part / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(Path(path).resolve(), link)
        counts[part] += 1
    print(f"{counts['train']} training and {counts['val']} held-out photos -> {args.out}")


if __name__ == "__main__":
    main()
