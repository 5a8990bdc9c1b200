"""Pack the training photos into one archive that fits a lent GPU machine's 64 MiB transfer.

    python tools/pack_gpu_data.py ../shared/data/train .gpudata/data.tar.xz --holdout-of runs/color5

The GPU machine sees only the repository's working tree (at most 64 MiB, small files counted
with overhead), not the shared data folder. The colouriser trains on 64x64 views, so the
Tiny-ImageNet photos go as they are and the larger photos are reduced (area filter) to a shorter
side of --short-side pixels, enough for the trainer's random views (0.6-1.0 of the shorter side,
then area-resized to 64). One tar, xz-compressed (the JPEGs' repeated headers compress away;
gzip left 42 MiB, too much beside the repository's own 27 MiB of weights). With --holdout-of RUN,
the photos that RUN held out for validation (its recipe's data, seed and val_fraction) go to val/
instead of train/ (as stored if 64x64, else as their validation view: the centre square
area-reduced to 64x64, in a PNG), so a run there trains without them and validates on what RUN
validated on (`--val /tmp/data/val`): its validation L1 compares with RUN's, and tools that
measure on RUN's hold-out stay unbiased. On the GPU machine:
`mkdir -p /tmp/data && tar -xJf .gpudata/data.tar.xz -C /tmp/data` (photos in /tmp/data/train).
"""

from __future__ import annotations

import argparse
import io
import json
import tarfile
from pathlib import Path

import cv2
import numpy as np

LARGE = ("imagenet1k", "coco128", "bsds500", "urban100", "sun80")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("train_dir", type=Path)
    parser.add_argument("archive", type=Path)
    parser.add_argument("--short-side", type=int, default=96)
    parser.add_argument("--quality", type=int, default=92)
    parser.add_argument("--holdout-of", type=Path, help="a run folder whose hold-out goes to val/")
    args = parser.parse_args()
    args.archive.parent.mkdir(parents=True, exist_ok=True)
    held = holdout_paths(args.holdout_of) if args.holdout_of else set()
    tmp = args.archive.with_name(args.archive.name + ".part")
    count = 0
    with tarfile.open(tmp, "w:xz", preset=9) as tar:
        for path in sorted(held):
            add_validation_photo(tar, path, f"val/{path.parent.name}_{path.stem}")
        for path in sorted((args.train_dir / "tinyimagenet").glob("*")):
            if path.resolve() in held:
                continue
            tar.add(path, arcname=f"train/tiny/{path.name}")
            count += 1
        for folder in LARGE:
            for path in sorted((args.train_dir / folder).rglob("*")):
                if path.resolve() in held:
                    continue
                img = cv2.imread(str(path), cv2.IMREAD_COLOR) if path.is_file() else None
                if img is None:
                    continue
                h, w = img.shape[:2]
                f = args.short_side / min(h, w)
                if f < 1:
                    img = cv2.resize(img, (max(1, round(w * f)), max(1, round(h * f))),
                                     interpolation=cv2.INTER_AREA)
                ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, args.quality])
                data = np.asarray(buf).tobytes()
                info = tarfile.TarInfo(f"train/large/{folder}_{path.stem}.jpg")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
                count += 1
    tmp.replace(args.archive)
    print(f"{count} training and {len(held)} validation photos, "
          f"{args.archive.stat().st_size / 2**20:.1f} MiB: {args.archive}")


def add_validation_photo(tar: tarfile.TarFile, path: Path, name: str, size: int = 64) -> None:
    """A held-out photo as the trainer validates it (color.center_sample): as stored when it is
    size x size already, else its centre square area-reduced to size x size (8-bit PNG)."""
    from colorsr_cli.io import read_image
    from colorsr_cli.train.color import center_sample

    rgb = read_image(path).rgb
    if rgb.shape[:2] == (size, size):
        tar.add(path, arcname=name + path.suffix)
        return
    view = center_sample(rgb, size).permute(1, 2, 0).numpy()
    ok, buf = cv2.imencode(".png", cv2.cvtColor(np.rint(view * 255).astype(np.uint8), cv2.COLOR_RGB2BGR))
    data = np.asarray(buf).tobytes()
    info = tarfile.TarInfo(name + ".png")
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def holdout_paths(run_dir: Path) -> set[Path]:
    """The photos a colouriser run held out (as train_color splits them), resolved."""
    from calibrate_chroma import validation_set  # tools/, beside this script

    if json.loads((run_dir / "recipe.json").read_text()).get("val"):
        raise SystemExit(f"{run_dir}: validated on its own --val folder; it held nothing out")
    photos, val = validation_set(run_dir)
    return {photos.paths[i].resolve() for i in val}


if __name__ == "__main__":
    main()
