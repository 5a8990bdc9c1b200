"""Soak test of `colorsr restore` (plain script, not a test): thousands of small images through
the library path the CLI uses (find_images -> restore_files with a Restorer), watching memory.

    python benchmarks/soak.py                                  # 2,000 32x32 gray PNGs, tiny random models
    python benchmarks/soak.py --color-weights c.pt --sr-weights s.pt --json-out soak.json

Memory is the process's resident set read from /proc/self/status on every result: VmRSS then,
the highest VmRSS seen so far, and VmHWM (the kernel's peak since the process started). If
nothing accumulates per image, the figures after the first 200 images and after all of them
are the same up to allocator noise."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from bench import machine, table
from PIL import Image

from colorsr_cli.batch import FileResult, OutputPlan, restore_files
from colorsr_cli.devices import resolve_device
from colorsr_cli.io import find_images
from colorsr_cli.models import build_model
from colorsr_cli.pipeline import RestoreOptions, Restorer
from colorsr_cli.weights import load_model

TINY = {"color": ("colorizer_unet", {"width": 8}), "sr": ("srgan_generator", {"channels": 8, "blocks": 2})}


@dataclass
class Checkpoint:
    images: int  # results reported so far
    seconds: float  # since restore_files started
    images_per_second: float
    rss_mb: float  # VmRSS now
    peak_rss_mb: float  # highest VmRSS seen on a result callback
    hwm_mb: float  # VmHWM: the kernel's peak resident set since the process started


def memory_mb() -> dict[str, float]:
    """VmRSS and VmHWM of this process, MiB (Linux /proc)."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024  # reported in kB
    return fields


def write_inputs(folder: Path, count: int, size: int) -> None:
    """count smooth random grayscale PNGs of size x size (compress like photos, not noise)."""
    rng = np.random.default_rng(0)
    for k in range(count):
        coarse = (rng.random((4, 4)) * 255).astype(np.uint8)
        Image.fromarray(coarse).resize((size, size), Image.BICUBIC).save(folder / f"img{k:05d}.png")


def models(color_weights: str | None, sr_weights: str | None) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The given weight files, or tiny random networks (what is measured then is the runner)."""
    torch.manual_seed(0)
    chosen = {"color": color_weights, "sr": sr_weights}
    return tuple(load_model(chosen[task], task)[0] if chosen[task] else build_model(*TINY[task])
                 for task in ("color", "sr"))


def soak(folder: Path, restorer: Restorer, checkpoints: set[int]
         ) -> tuple[list[Checkpoint], list[FileResult]]:
    """Restore everything in folder/in to folder/out; a Checkpoint at each count in checkpoints."""
    jobs, problems = find_images([str(folder / "in")])
    if problems:
        raise SystemExit(f"cannot list inputs: {problems[:3]}")
    marks: list[Checkpoint] = []
    count, peak_rss = 0, 0.0
    start = time.perf_counter()

    def on_result(result: FileResult) -> None:
        nonlocal count, peak_rss
        mem = memory_mb()
        count, peak_rss = count + 1, max(peak_rss, mem["VmRSS"])
        if count in checkpoints:
            seconds = time.perf_counter() - start
            marks.append(Checkpoint(count, round(seconds, 2), round(count / seconds, 1),
                                    round(mem["VmRSS"], 1), round(peak_rss, 1), round(mem["VmHWM"], 1)))

    results = restore_files(jobs, restorer, OutputPlan(folder / "out"), on_result)
    return marks, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--size", type=int, default=32, help="input side, pixels (output is 4x)")
    parser.add_argument("--early", type=int, default=200, help="first memory checkpoint, images")
    parser.add_argument("--batch-size", type=int, default=16, help="as `colorsr restore -b` (default 16)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--color-weights", default=None, help="default: a tiny random colouriser")
    parser.add_argument("--sr-weights", default=None, help="default: a tiny random SR network")
    parser.add_argument("--json-out", type=Path, help="also write the figures here as JSON")
    args = parser.parse_args()

    device = resolve_device(args.device)
    restorer = Restorer(*models(args.color_weights, args.sr_weights),
                        RestoreOptions(batch_size=args.batch_size), device)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="colorsr-soak-") as tmp:
        folder = Path(tmp)
        (folder / "in").mkdir()
        write_inputs(folder / "in", args.images, args.size)
        before = memory_mb()
        marks, results = soak(folder, restorer, {min(args.early, args.images), args.images})
    failed = [r for r in results if r.status != "done"]
    if failed:
        raise SystemExit(f"{len(failed)} images did not restore, e.g. {failed[0]}")

    first, last = marks[0], marks[-1]
    steady = (last.images - first.images) / max(last.seconds - first.seconds, 1e-9)
    rows = [[str(m.images), f"{m.seconds:.1f}", f"{m.images_per_second:.1f}", f"{m.rss_mb:.0f}",
             f"{m.peak_rss_mb:.0f}", f"{m.hwm_mb:.0f}"] for m in marks]
    print(f"Machine: {machine()}; device {device}; load average {load_before[0]:.1f} at start, "
          f"{os.getloadavg()[0]:.1f} at end.")
    weights = "given" if args.color_weights or args.sr_weights else "tiny random"
    print(f"{args.images} images {args.size}x{args.size} -> {4 * args.size}x{4 * args.size}, batch size "
          f"{args.batch_size}, models: {weights}; RSS before the run {before['VmRSS']:.0f} MiB.\n")
    print(table(["images", "seconds", "images/s", "RSS MiB", "peak RSS MiB", "VmHWM MiB"], rows))
    print(f"\nSteady rate after image {first.images}: {steady:.1f} images/s; RSS growth from image "
          f"{first.images} to {last.images}: {last.rss_mb - first.rss_mb:+.1f} MiB.")
    if args.json_out:
        report = {"command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]), "machine": machine(),
                  "device": str(device), "load_average_start": load_before[0],
                  "load_average_end": os.getloadavg()[0], "images": args.images, "size": args.size,
                  "batch_size": args.batch_size, "rss_before_mb": round(before["VmRSS"], 1),
                  "steady_images_per_second": round(steady, 1),
                  "checkpoints": [asdict(m) for m in marks]}
        args.json_out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
