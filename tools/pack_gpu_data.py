"""Pack the training photos into one archive that fits a lent GPU machine's 64 MiB transfer.

    python tools/pack_gpu_data.py ../shared/data/train .gpudata/data.tar.gz

The GPU machine sees only the repository's working tree (at most 64 MiB, small files counted
with overhead), not the shared data folder. The colouriser trains on 64x64 views, so the
Tiny-ImageNet photos go as they are and the larger photos are reduced (area filter) to a shorter
side of --short-side pixels, enough for the trainer's random views (0.6-1.0 of the shorter side,
then area-resized to 64). One gzip'd tar: the JPEGs' repeated headers compress away (25,250
Tiny-ImageNet files of 47 MiB and 1,689 reduced photos came to 42 MiB). On the GPU machine:
`mkdir -p /tmp/data && tar -xzf .gpudata/data.tar.gz -C /tmp/data` (photos in /tmp/data/train).
"""

from __future__ import annotations

import argparse
import io
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
    args = parser.parse_args()
    args.archive.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.archive.with_name(args.archive.name + ".part")
    count = 0
    with tarfile.open(tmp, "w:gz") as tar:
        for path in sorted((args.train_dir / "tinyimagenet").glob("*")):
            tar.add(path, arcname=f"train/tiny/{path.name}")
            count += 1
        for folder in LARGE:
            for path in sorted((args.train_dir / folder).rglob("*")):
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
    print(f"{count} photos, {args.archive.stat().st_size / 2**20:.1f} MiB: {args.archive}")


if __name__ == "__main__":
    main()
