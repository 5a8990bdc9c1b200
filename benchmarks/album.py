"""End-to-end time of `colorsr restore` on a mixed album against the time spent in the networks
(plain script, not a test): 10 photos (gray, colour and sepia-toned; 160x120 to 640x480),
restored through the path the CLI takes (plan_outputs -> restore_planned, uint8 outputs, PNG at
the default level) with the shipped models.

    python benchmarks/album.py [--device cpu] [--model fast]

Reports: end-to-end seconds (planning, decoding, restoring, encoding, writing), the seconds
inside Restorer.restore (the networks and the colour/tile arithmetic around them), their ratio,
and when the first output was written (and reported to the progress bar, which happens between
batches) against the first batch's restore time."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from colorsr_cli import batch  # noqa: E402
from colorsr_cli.batch import OutputPlan, plan_outputs, restore_planned  # noqa: E402
from colorsr_cli.cli.common import Precision, device_options, load_models  # noqa: E402
from colorsr_cli.devices import resolve_device  # noqa: E402
from colorsr_cli.io import find_images  # noqa: E402
from colorsr_cli.pipeline import RestoreOptions, Restorer  # noqa: E402
from tests.conftest import photo_like, toned_like  # noqa: E402

SIZES = [(120, 160), (240, 320), (480, 640), (360, 480), (120, 160), (240, 320), (300, 400),
         (480, 640), (150, 200), (360, 480)]


def write_album(folder: Path) -> None:
    for k, (h, w) in enumerate(SIZES):
        kind = ("gray", "colour", "sepia")[k % 3]
        if kind == "gray":
            img = photo_like(h, w, k, gray=True)
        elif kind == "colour":
            img = photo_like(h, w, k)
        else:
            img = toned_like(h, w, 8, 22, seed=k)
        Image.fromarray(img).save(folder / f"{k:02d}_{kind}.jpg", quality=92)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="auto")
    parser.add_argument("--model", default="default")
    args = parser.parse_args()
    device = resolve_device(args.device)
    color, sr = load_models([], None, None, need_color=True, need_sr=True, model=args.model)
    options = RestoreOptions(keep_colour=True, uint8_output=True, **device_options(device, None, None,
                                                                                  Precision.auto))
    restorer = Restorer(color, sr, options, device)
    compute, slowest = [], 0.0
    real = restorer.restore

    def timed(images, *flags):
        start = time.perf_counter()
        out = real(images, *flags)
        compute.append(time.perf_counter() - start)
        return out

    restorer.restore = timed
    written = []
    real_write = batch.write_image_atomic

    def write_and_time(*args, **kwargs):
        real_write(*args, **kwargs)
        written.append(time.perf_counter())

    batch.write_image_atomic = write_and_time
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "in").mkdir()
        write_album(root / "in")
        start = time.perf_counter()
        plan = OutputPlan(root / "out")
        planned = list(plan_outputs(find_images([str(root / "in")])[0], plan))
        reported = []
        results = restore_planned(planned, restorer, plan,
                                  lambda r: reported.append(time.perf_counter() - start))
        total = time.perf_counter() - start
    slowest = max(compute)
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print("| photos | end-to-end s | in Restorer.restore s | ratio | first output written s | "
          "first reported s | first restore s | slowest restore s |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| {sum(r.status == 'done' for r in results)} | {total:.2f} | {sum(compute):.2f} | "
          f"{total / sum(compute):.2f}x | {written[0] - start:.2f} | {reported[0]:.2f} | {compute[0]:.2f} | "
          f"{slowest:.2f} |")
    print(f"batches: {len(compute)}; kept colour: {sum(r.kept_colour for r in results)}; "
          f"restore seconds per batch: {np.round(compute, 2).tolist()}")


if __name__ == "__main__":
    main()
