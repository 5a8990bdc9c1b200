"""Throughput benchmark of colorsr's stages and whole pipeline (plain script, not a test).

    python benchmarks/bench.py --quick                # < 2 minutes on a 2-core laptop CPU
    python benchmarks/bench.py --out docs/performance.md

Every number is also put next to the machine's measured conv peak (a large 3x3 conv timed in
the same run), and FLOPs per image are counted with torch.utils.flop_counter."""

from __future__ import annotations

import argparse
import copy
import platform
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from colorsr_cli.models.blocks import fuse_batchnorm
from colorsr_cli.pipeline import RestoreOptions, Restorer
from colorsr_cli.weights import load_model


def timed(fn: Callable[[], object], min_seconds: float, warmup: int = 1) -> float:
    """Seconds per call: warm up, then repeat until min_seconds have passed."""
    for _ in range(warmup):
        fn()
    calls, start = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return elapsed / calls


def flops_of(fn: Callable[[], object]) -> float:
    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


@torch.inference_mode()
def conv_peak(device: torch.device, dtype: torch.dtype, seconds: float) -> float:
    """GFLOP/s of a large, well-shaped 3x3 convolution: the practical peak for conv nets."""
    conv = torch.nn.Conv2d(128, 128, 3, padding=1).to(device, dtype)
    x = torch.randn(8, 128, 96, 96, device=device, dtype=dtype)
    run = lambda: conv(x)  # noqa: E731
    return flops_of(run) / timed(run, seconds) / 1e9


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu}; torch {torch.__version__}, {torch.get_num_threads()} threads; "
            f"Python {platform.python_version()}")


def stage_rows(models: dict[str, torch.nn.Module], batches: list[int], device: torch.device,
               seconds: float, peak: float, variants: list[str]) -> list[list[str]]:
    rows = []
    inputs = {"color": lambda n: torch.rand(n, 1, 64, 64, device=device) * 2 - 1,
              "sr": lambda n: torch.rand(n, 3, 64, 64, device=device)}
    for name, model in models.items():
        base = fuse_batchnorm(copy.deepcopy(model).eval()).to(device)
        per_image = flops_of(lambda: base(inputs[name](1)))  # noqa: B023
        for variant in variants:
            net = base
            if variant == "channels_last":
                net = copy.deepcopy(base).to(memory_format=torch.channels_last)
            for n in batches:
                x = inputs[name](n)
                if variant == "channels_last":
                    x = x.contiguous(memory_format=torch.channels_last)
                with torch.inference_mode():
                    t = timed(lambda: net(x), seconds)  # noqa: B023
                gflops = per_image * n / t / 1e9
                rows.append([name, variant, str(n), f"{n / t:.1f}", f"{per_image / 1e9:.2f}",
                             f"{gflops:.1f}", f"{100 * gflops / peak:.0f}%"])
    return rows


def pipeline_rows(color, sr, device, seconds, batches) -> list[list[str]]:
    rows = []
    for n in batches:
        restorer = Restorer(color, sr, RestoreOptions(batch_size=n), device)
        imgs = [torch.rand(3, 64, 64) for _ in range(n)]
        t = timed(lambda: restorer.restore(imgs), seconds)  # noqa: B023
        rows.append(["64x64 -> 256x256", str(n), f"{n / t:.1f} img/s", f"{n * 256 * 256 / t / 1e6:.2f}"])
    return rows


def tiled_rows(color, sr, device, seconds) -> list[list[str]]:
    """640x480 input: tiled SR (sr-only, so the overhead of overlap and stitching shows) and the
    whole tiled pipeline, against one whole-image SR pass over the same pixels."""
    img = torch.rand(3, 480, 640)
    rows = []
    pure = fuse_batchnorm(copy.deepcopy(sr).eval()).to(device)
    with torch.inference_mode():
        t_pure = timed(lambda: pure(img[None].to(device)), seconds)
    setups = [("sr-only", 128, 16), ("sr-only", 160, 16), ("sr-only", 256, 16), ("full", 128, 16)]
    for mode, tile, pad in setups:
        opts = RestoreOptions(mode=mode, tile=tile, tile_pad=pad, batch_size=16)
        restorer = Restorer(color if mode == "full" else None, sr, opts, device)
        t = timed(lambda: restorer.restore([img]), seconds)  # noqa: B023
        rows.append([mode, f"tile {tile} pad {pad}", f"{4 * 640 * 4 * 480 / t / 1e6:.2f}", f"{t:.2f}",
                     f"{t_pure:.2f}", f"{t / t_pure:.2f}x"])
    return rows


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer settings, shorter timings")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, help="write the markdown report here")
    parser.add_argument("--color-weights", default=None)
    parser.add_argument("--sr-weights", default=None)
    args = parser.parse_args()
    device = torch.device(args.device)
    seconds = 0.5 if args.quick else 2.0
    batches = [1, 4, 16] if args.quick else [1, 4, 16, 64]
    variants = ["eager"] if args.quick else ["eager", "channels_last"]
    color, _ = load_model(args.color_weights, "color")
    sr, _ = load_model(args.sr_weights, "sr")

    peak = conv_peak(device, torch.float32, seconds)
    parts = [f"Machine: {machine()}; device {device}.", "",
             f"Measured conv peak (3x3 conv, 128->128 channels, 8x96x96, fp32): **{peak:.0f} GFLOP/s**.", "",
             "## Stages (one forward pass on 64x64 inputs, BatchNorm folded)", "",
             table(["stage", "variant", "batch", "images/s", "GFLOP/image", "GFLOP/s", "of peak"],
                   stage_rows({"color": color, "sr": sr}, batches, device, seconds, peak, variants)), "",
             "## Whole pipeline (colourise + SR, through Restorer)", "",
             table(["input", "batch", "throughput", "output MP/s"],
                   pipeline_rows(color, sr, device, seconds, batches)), "",
             "## Tiled restore of a 640x480 input (output 2560x1920)", "",
             table(["mode", "tiling", "output MP/s", "seconds", "one-pass SR seconds", "cost vs one pass"],
                   tiled_rows(color, sr, device, seconds))]
    report = "\n".join(parts) + "\n"
    print(report)
    if args.out:
        args.out.write_text(f"# Performance\n\nCommand: `python benchmarks/bench.py"
                            f"{' --quick' if args.quick else ''} --device {args.device}`\n\n{report}")


if __name__ == "__main__":
    main()
