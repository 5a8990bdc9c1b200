"""How a colouriser does on small photos given as stored or as the evaluation protocol shows them.

    python tools/input_view.py WEIGHTS... --run RUN_DIR        # the run's held-out photos
    python tools/input_view.py WEIGHTS... --folder DIR         # any folder (e.g. a test folder)

Only photos stored at 64x64 are used. The truth is the protocol's (evaluate.protocol_pair: the
photo enlarged to 256x256, reduced back to 64x64 with an area filter); the input is its luminance
either from the photo as stored ("stored") or from that protocol view ("protocol", softer: what
`colorsr eval` feeds the colouriser and what `train color --native-resample` trains on). Prints
mean ab error against gray's and colourfulness against the truth's for each file's own chroma
gain times each --gains factor."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from colorsr_cli.calibrate import holdout_photos, protocol_views
from colorsr_cli.color import lab_to_rgb, rgb_to_lab
from colorsr_cli.io import find_images, read_image
from colorsr_cli.metrics import ab_error, colorfulness
from colorsr_cli.weightfile import load_weight_file


def small_photos(run: Path | None, folder: Path | None) -> list[np.ndarray]:
    if run is not None:
        images = holdout_photos(run)
    else:
        jobs, _ = find_images([str(folder)])
        images = [read_image(job.source).rgb for job in jobs]
    return [img for img in images if img.shape[:2] == (64, 64)]


@torch.inference_mode()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights", type=Path, nargs="+")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--run", type=Path, help="a colour training run: its validation hold-out")
    where.add_argument("--folder", type=Path)
    parser.add_argument("--gains", type=float, nargs="+", default=[0.9, 1.0, 1.1],
                        help="factors on each file's own chroma gain")
    args = parser.parse_args()
    images = small_photos(args.run, args.folder)
    protocol_gray, truth = protocol_views(images)
    views = {"stored": torch.stack([torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))
                                    for img in images]),
             "protocol": protocol_gray}
    target = colorfulness(truth).mean().item()
    print(f"{len(images)} photos of 64x64; truth colourfulness {target:.1f}")
    print("weights                      input     gain  ab_error  vs gray  colourfulness vs truth")
    for path in args.weights:
        model, _ = load_weight_file(path)
        model.eval()
        for view, rgb in views.items():
            L = rgb_to_lab(rgb)[:, :1]
            ab = model(L / 50 - 1) * 110
            gray = ab_error(lab_to_rgb(torch.cat((L, torch.zeros_like(ab)), 1)), truth).mean().item()
            for gain in args.gains:
                out = lab_to_rgb(torch.cat((L, ab * gain), 1))
                e, c = ab_error(out, truth).mean().item(), colorfulness(out).mean().item()
                print(f"{path.name:28.28s} {view:8s} {gain:5.2f}  {e:8.2f}  {e / gray:7.3f}  "
                      f"{c:13.1f} {c / target:8.2f}")


if __name__ == "__main__":
    main()
