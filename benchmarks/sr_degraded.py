"""SR on degraded photos (blurred, reduced, noisy, JPEG-compressed: what small old scans look
like), side by side in one run: quality against the truth and against the teacher
(realesrgan-x4plus), NIQE, and images/s on this machine.

    python tools/degrade_photos.py PHOTOS... DEGRADED --seed 0     # once: DEGRADED/lr, DEGRADED/hr
    python benchmarks/sr_degraded.py DEGRADED --model colorsr-sr-v2 --model STUDENT.pt \\
        [--teacher realesrgan-x4plus] [--sheet docs/sr-before-after.png] [--json report.json]

The teacher's outputs are kept in DEGRADED/teacher/ (computed once, reused by later runs);
every method's speed is timed in this run on the first --speed-images inputs, at batch 16,
fp32, with --threads threads. PSNR is on RGB with a 4-pixel border cropped; NIQE (Mittal et al.
2013, lower looks more natural) is that of each method's outputs taken together
(metrics.niqe_of_set: a 256x256 photo alone has too few patches), next to the truth's own.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from colorsr_cli.evaluate import labelled_sheet
from colorsr_cli.io import find_images, read_image, write_image_atomic
from colorsr_cli.metrics import niqe_of_set, psnr, ssim
from colorsr_cli.pipeline import RestoreOptions, Restorer, resize, to_tensor
from colorsr_cli.weights import load_model


def load_folder(root: Path) -> dict[str, torch.Tensor]:
    jobs, _ = find_images([str(root)])
    return {str(job.relative.with_suffix(".png")): to_tensor(read_image(job.source).rgb) for job in jobs}


def upscaler(name: str):
    """name -> a function from a list of (3, h, w) inputs to their x4 outputs."""
    if name == "bicubic":
        return lambda xs: [resize(x, (4 * x.shape[-2], 4 * x.shape[-1]), "bicubic").clamp(0, 1) for x in xs]
    model, _ = load_model(name, "sr")
    restorer = Restorer(None, model, RestoreOptions(mode="sr-only", scale=4, tile=0, batch_size=16))
    return restorer.restore


def run_all(fn, inputs: list[torch.Tensor], chunk: int = 16) -> list[torch.Tensor]:
    out: list[torch.Tensor] = []
    for k in range(0, len(inputs), chunk):
        out += [y.float().clamp(0, 1) for y in fn(inputs[k:k + chunk])]
    return out


def images_per_second(fn, inputs: list[torch.Tensor]) -> float:
    fn(inputs[:2])  # warm-up
    start = time.perf_counter()
    run_all(fn, inputs)
    return len(inputs) / (time.perf_counter() - start)


def crop(x: torch.Tensor, border: int = 4) -> torch.Tensor:
    return x[..., border:-border, border:-border]


def mean_of(metric, x: torch.Tensor, y: torch.Tensor, chunk: int = 16) -> float:
    """metric's per-image values averaged over the set, computed chunk by chunk (bounded memory)."""
    return float(torch.cat([metric(a, b) for a, b in zip(x.split(chunk), y.split(chunk))]).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("degraded", type=Path)
    parser.add_argument("--model", action="append", default=[], help="SR weights (name or file); repeat")
    parser.add_argument("--teacher", default="realesrgan-x4plus")
    parser.add_argument("--speed-images", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sheet", type=Path, default=None)
    parser.add_argument("--sheet-rows", type=int, default=8)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    lows, truths = load_folder(args.degraded / "lr"), load_folder(args.degraded / "hr")
    names = sorted(lows)
    inputs = [lows[n] for n in names]
    teacher_fn = upscaler(args.teacher)
    cached = load_folder(args.degraded / "teacher") if (args.degraded / "teacher").exists() else {}
    missing = [n for n in names if n not in cached]
    for k in range(0, len(missing), 16):
        part = missing[k:k + 16]
        for n, y in zip(part, run_all(teacher_fn, [lows[n] for n in part])):
            write_image_atomic(args.degraded / "teacher" / n, y.permute(1, 2, 0).numpy())
            cached[n] = to_tensor(read_image(args.degraded / "teacher" / n).rgb)
    teacher = torch.stack([cached[n] for n in names])
    truth = torch.stack([truths[n] for n in names])

    methods = ["bicubic", *args.model, args.teacher]
    speed_inputs = inputs[:args.speed_images]
    rows, outputs = {}, {}
    for name in methods:
        fn = teacher_fn if name == args.teacher else upscaler(name)
        out = teacher if name == args.teacher else torch.stack(run_all(fn, inputs))
        outputs[name] = out
        rows[name] = {
            "psnr_vs_teacher": mean_of(psnr, crop(out), crop(teacher)),
            "psnr_vs_truth": mean_of(psnr, crop(out), crop(truth)),
            "ssim_vs_truth": mean_of(ssim, crop(out), crop(truth)),
            "niqe": float(niqe_of_set(out)),
            "images_per_s": images_per_second(fn, speed_inputs),
        }
    truth_niqe = float(niqe_of_set(truth))
    speed_of_teacher = rows[args.teacher]["images_per_s"]

    print(f"{len(names)} photos, {inputs[0].shape[-1]}x{inputs[0].shape[-2]} inputs; "
          f"truth NIQE {truth_niqe:.2f}; {args.threads} threads")
    print("| method | PSNR vs teacher | PSNR vs truth | SSIM vs truth | NIQE | images/s | x teacher |")
    print("|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['psnr_vs_teacher']:.2f} | {r['psnr_vs_truth']:.2f} | {r['ssim_vs_truth']:.4f} "
              f"| {r['niqe']:.2f} | {r['images_per_s']:.2f} | {r['images_per_s'] / speed_of_teacher:.1f} |")
    if args.json:
        args.json.write_text(json.dumps({"photos": len(names), "truth_niqe": truth_niqe,
                                         "threads": args.threads, "methods": rows}, indent=1))
    if args.sheet:
        # The photos where the teacher differs most from bicubic: where restoration shows.
        gain = [float(psnr(crop(teacher[i:i + 1]), crop(truth[i:i + 1])) - psnr(
            crop(outputs["bicubic"][i:i + 1]), crop(truth[i:i + 1]))) for i in range(len(names))]
        picked = np.argsort(gain)[::-1][:args.sheet_rows]
        columns = ["degraded input (nearest x4)", *methods, "truth"]
        sheet_rows = [[resize(inputs[i], truth.shape[-2:], "nearest"),
                       *(outputs[m][i] for m in methods), truth[i]] for i in picked]
        write_image_atomic(args.sheet, labelled_sheet(sheet_rows, columns, [names[i] for i in picked])
                           .astype(np.float32) / 255)


if __name__ == "__main__":
    main()
