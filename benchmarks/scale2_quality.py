"""How good `--scale 2` is: the route restore takes (the shipped x4 SR model on the input, its
output reduced 2x by area; Restorer at scale 2) against running the model on the input reduced 2x
first (a quarter of the network's work) and against plain bicubic 2x.

Protocol: each high-resolution colour photo (scikit-image's bundled ones) is reduced 2x by area,
that is the input; each method enlarges it 2x; PSNR (dB, RGB, 4-pixel border cropped) against
the original. Seconds are the SR network's wall time on this machine.

    python benchmarks/scale2_quality.py
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F
from skimage import data

from colorsr_cli.pipeline import RestoreOptions, Restorer, resize
from colorsr_cli.weights import load_model

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")


def psnr(a: torch.Tensor, b: torch.Tensor, border: int = 4) -> float:
    a, b = a[..., border:-border, border:-border], b[..., border:-border, border:-border]
    return float(10 * torch.log10(1 / F.mse_loss(a.clamp(0, 1), b)))


def main() -> None:
    sr = load_model(None, "sr")[0]
    rows = {name: [] for name in ("x4 model, output reduced 2x (restore --scale 2)",
                                  "x4 model on the input reduced 2x", "bicubic 2x")}
    seconds = {name: 0.0 for name in rows}
    for photo in PHOTOS:
        hr = torch.from_numpy(getattr(data, photo)()[..., :3].copy()).permute(2, 0, 1).float() / 255
        h, w = (hr.shape[1] // 4) * 4, (hr.shape[2] // 4) * 4
        hr = hr[:, :h, :w]
        lr = resize(hr, (h // 2, w // 2), "area")
        quarter = resize(lr, (h // 4, w // 4), "area")
        for name, scale, given in (("x4 model, output reduced 2x (restore --scale 2)", 2, lr),
                                   ("x4 model on the input reduced 2x", 4, quarter)):
            restorer = Restorer(None, sr, RestoreOptions(mode="sr-only", scale=scale, tile=0))
            start = time.perf_counter()
            out = restorer.restore([given])[0]
            seconds[name] += time.perf_counter() - start
            rows[name].append(psnr(out, hr))
        rows["bicubic 2x"].append(psnr(resize(lr, (h, w), "bicubic"), hr))
    print("| method | " + " | ".join(PHOTOS) + " | mean PSNR dB | SR seconds |")
    print("|---|" + "---|" * (len(PHOTOS) + 2))
    for name, values in rows.items():
        cells = " | ".join(f"{v:.2f}" for v in values)
        print(f"| {name} | {cells} | {np.mean(values):.2f} | {seconds[name]:.2f} |")


if __name__ == "__main__":
    torch.set_num_threads(2)
    main()
