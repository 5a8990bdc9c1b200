"""Throughput benchmark of colorsr's stages and whole pipeline (plain script, not a test).

    python benchmarks/bench.py --quick                # < 2 minutes on a 2-core laptop CPU
    python benchmarks/bench.py --out docs/performance.md

Every number is also put next to the machine's measured conv peak (a large 3x3 conv timed in
the same run), and FLOPs per image are counted with torch.utils.flop_counter."""

from __future__ import annotations

import argparse
import contextlib
import copy
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from colorsr_cli.devices import PRECISIONS, resolve_device, tune_cpu_allocator
from colorsr_cli.errors import ColorsrError
from colorsr_cli.models.blocks import bicubic_upscale, fuse_batchnorm
from colorsr_cli.pipeline import RestoreOptions, Restorer, default_options, inference_copy
from colorsr_cli.weights import load_model

NOTES_MARKER = "<!-- notes: kept when bench.py rewrites this file -->"


def timed(fn: Callable[[], object], min_seconds: float, warmup: int = 1,
          device: torch.device | None = None, windows: int = 3) -> float:
    """Seconds per call: warm up, then `windows` back-to-back windows of min_seconds / windows
    each (calls repeated until the window is over; CUDA: synchronised); the fastest window's
    mean. On a shared VM interference only ever slows a window down, so the best window is the
    machine's own speed (as timeit's min); the peak and every stage are timed the same way."""
    sync = torch.cuda.synchronize if device is not None and device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    best = float("inf")
    for _ in range(windows):
        calls, start = 0, time.perf_counter()
        while True:
            fn()
            calls += 1
            sync()
            elapsed = time.perf_counter() - start
            if elapsed >= min_seconds / windows:
                break
        best = min(best, elapsed / calls)
    return best


def flops_of(fn: Callable[[], object]) -> float:
    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


def peak_batch(device: torch.device) -> int:
    """Batch of the peak conv: a GPU needs a bigger problem than a CPU to be busy for longer
    than a kernel launch."""
    return 8 if device.type == "cpu" else 256


@torch.inference_mode()
def conv_peak(device: torch.device, dtype: torch.dtype, seconds: float) -> dict[str, float]:
    """GFLOP/s of a large, well-shaped 3x3 convolution in both memory layouts: the practical
    peak for conv nets on this device (the larger of the two is the reference)."""
    conv = torch.nn.Conv2d(128, 128, 3, padding=1).to(device, dtype)
    x = torch.randn(peak_batch(device), 128, 96, 96, device=device, dtype=dtype)
    work = flops_of(lambda: conv(x))
    nchw = work / timed(lambda: conv(x), seconds, device=device) / 1e9
    cl_format = torch.channels_last
    conv_cl, x_cl = conv.to(memory_format=cl_format), x.contiguous(memory_format=cl_format)
    cl = work / timed(lambda: conv_cl(x_cl), seconds, device=device) / 1e9
    return {"nchw": nchw, "channels_last": cl}


@torch.inference_mode()
def matmul_peak(device: torch.device, seconds: float) -> float:
    """GFLOP/s of a 4096x4096 fp32 matrix product: the hardware's multiply-add rate."""
    a = torch.randn(4096, 4096, device=device)
    return 2 * 4096**3 / timed(lambda: a @ a, seconds, device=device) / 1e9


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


def prepared(model: torch.nn.Module, variant: str, device: torch.device) -> torch.nn.Module:
    """folded-nchw: BatchNorm folded, NCHW (the plain eval form, for comparison). inference: what the
    Restorer runs (pipeline.inference_copy: + sub-pixel tail fold, channels-last). compile:
    that, through torch.compile."""
    if variant == "folded-nchw":
        return fuse_batchnorm(copy.deepcopy(model).eval()).to(device)
    net = inference_copy(model, device)
    if variant != "compile":
        return net
    # Each (dtype, batch size) is a new graph; the default limit of 8 recompilations would fall
    # back to eager for the last ones and time those rows uncompiled.
    torch._dynamo.config.recompile_limit = 64
    return torch.compile(net)


def autocast(device: torch.device, dtype: torch.dtype):
    if dtype is torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype)


def stage_rows(models: dict[str, torch.nn.Module], batches: list[int], device: torch.device,
               seconds: float, peaks: dict[torch.dtype, float], variants: list[str],
               dtypes: list[torch.dtype]) -> list[list[str]]:
    rows = []
    inputs = {"color": lambda n: torch.rand(n, 1, 64, 64, device=device) * 2 - 1,
              "sr": lambda n: torch.rand(n, 3, 64, 64, device=device)}
    for name, model in models.items():
        kind = "color" if name == "color" else "sr"
        folded = prepared(model, "folded-nchw", device)
        with torch.inference_mode():
            per_image = flops_of(lambda: folded(inputs[kind](1)))  # noqa: B023
        for variant in variants:
            net = prepared(model, variant, device)
            for dtype in dtypes:
                peak = peaks[dtype]
                for n in batches:
                    x = inputs[kind](n)
                    if variant != "folded-nchw":
                        x = x.contiguous(memory_format=torch.channels_last)
                    with torch.inference_mode(), autocast(device, dtype):
                        t = timed(lambda: net(x), seconds, device=device)  # noqa: B023
                    gflops = per_image * n / t / 1e9
                    rows.append([name, variant, str(dtype).replace("torch.", ""), str(n), f"{n / t:.1f}",
                                 f"{per_image / 1e9:.2f}", f"{gflops:.1f}", f"{100 * gflops / peak:.0f}%"])
    return rows


def pipeline_rows(color, sr, device, seconds, batches, dtype) -> list[list[str]]:
    rows = []
    for n in batches:
        restorer = Restorer(color, sr, RestoreOptions(batch_size=n, dtype=dtype), device)
        imgs = [torch.rand(3, 64, 64) for _ in range(n)]
        t = timed(lambda: restorer.restore(imgs), seconds, device=device)  # noqa: B023
        rows.append(["64x64 -> 256x256", str(dtype).replace("torch.", ""), str(n), f"{n / t:.1f} img/s",
                     f"{n * 256 * 256 / t / 1e6:.2f}"])
    return rows


def tiled_rows(color, sr, device, seconds, setups, dtype) -> list[list[str]]:
    """640x480 input: tiled SR (sr-only, so the overhead of overlap and stitching shows) and the
    whole tiled pipeline, against one whole-image pass of the same SR network (inference form)
    over the same pixels: the pure SR compute."""
    img = torch.rand(3, 480, 640)
    rows = []
    pure = inference_copy(sr, device)
    x = img[None].to(device).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), autocast(device, dtype):
        t_pure = timed(lambda: pure(x), seconds, device=device)
    for mode, tile, pad, batch in setups:
        opts = RestoreOptions(mode=mode, tile=tile, tile_pad=pad, batch_size=batch, dtype=dtype)
        restorer = Restorer(color if mode == "full" else None, sr, opts, device)
        t = timed(lambda: restorer.restore([img]), seconds, device=device)  # noqa: B023
        rows.append([mode, f"tile {tile} pad {pad}, batch {batch}", f"{4 * 640 * 4 * 480 / t / 1e6:.2f}",
                     f"{t:.2f}", f"{t_pure:.2f}", f"{t / t_pure:.2f}x"])
    return rows


def video_rows(color, sr, device, frames: int, dtype) -> list[list[str]]:
    """frames/s of `colorsr video` (decode, colourise, SR, smooth, encode) on a synthetic clip."""
    import tempfile

    import cv2
    import numpy as np

    from colorsr_cli.video import frames_per_batch, prepare_video, restore_video

    rows = []
    defaults = default_options(device)
    restorer = Restorer(color, sr, RestoreOptions(batch_size=defaults["batch_size"], tile=defaults["tile"],
                                                  batch_pixels=defaults["batch_pixels"], dtype=dtype,
                                                  uint8_output=True),
                        device)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        for w, h in ((64, 64), (320, 240)):
            clip, out = Path(tmp) / f"in{w}.mp4", Path(tmp) / f"out{w}.mp4"
            writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 24.0, (w, h))
            base = rng.integers(0, 256, (h // 8, w // 8), dtype=np.uint8)
            for _ in range(frames):
                gray = cv2.resize(base, (w, h), interpolation=cv2.INTER_CUBIC)
                writer.write(cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR))
            writer.release()
            result = restore_video(prepare_video(clip, out), restorer)
            rows.append([f"{w}x{h} -> {4 * w}x{4 * h}", str(result.frames),
                         str(frames_per_batch(restorer.options, w, h)),
                         f"{result.frames / result.seconds:.2f}"])
    return rows


def bicubic_rows(device: torch.device, seconds: float) -> list[list[str]]:
    """The SR output's bicubic base: F.interpolate against blocks.bicubic_upscale (a 5x5
    convolution per output sub-pixel + PixelShuffle), both float32."""
    import torch.nn.functional as F

    rows = []
    for shape in ((16, 3, 64, 64), (1, 3, 512, 512)):
        x = torch.rand(*shape, device=device)
        with torch.inference_mode():
            t_ref = timed(lambda: F.interpolate(x, scale_factor=4, mode="bicubic",  # noqa: B023
                                                align_corners=False), seconds, device=device)
            t_conv = timed(lambda: bicubic_upscale(x, 4), seconds, device=device)  # noqa: B023
        rows.append(["x".join(map(str, shape)), f"{1000 * t_ref:.1f}", f"{1000 * t_conv:.1f}",
                     f"{t_ref / t_conv:.1f}x"])
    return rows


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def section(header: list[str], rows: Callable[[], list[list[str]]]) -> str:
    """A table, printed as soon as it is measured; a section that fails (a device path that
    breaks) is reported in its place and the other sections still run."""
    try:
        text = table(header, rows())
    except Exception as exc:  # noqa: BLE001 - any failure is reported, the run goes on
        text = f"(this section failed: {type(exc).__name__}: {exc})"
    print(text + "\n", file=sys.stderr, flush=True)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer settings, shorter timings")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, help="write the markdown report here")
    parser.add_argument("--color-weights", default=None)
    parser.add_argument("--sr-weights", default=None)
    parser.add_argument("--fast-sr-weights", default="colorsr-sr-fast-v2",
                        help="the --model fast SR network ('' to skip)")
    parser.add_argument("--seconds", type=float, default=None,
                        help="timing per setting (default 0.5 with --quick, else 2)")
    parser.add_argument("--no-compile", action="store_true",
                        help="leave out the torch.compile rows (their compiles take minutes)")
    parser.add_argument("--no-malloc-tuning", action="store_true",
                        help="leave glibc's allocator as it is (to measure what tuning it gives)")
    args = parser.parse_args()
    if not args.no_malloc_tuning:
        tune_cpu_allocator()
    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    seconds = args.seconds or (0.5 if args.quick else 2.0)
    batches = [1, 4, 16] if args.quick else [1, 4, 16, 64]
    variants = ["folded-nchw", "inference"] if args.quick or args.no_compile else \
        ["folded-nchw", "inference", "compile"]
    defaults = default_options(device)
    default_dtype = PRECISIONS[defaults["precision"]]
    dtypes = [torch.float32] + ([torch.bfloat16] if default_dtype is torch.bfloat16 else [])
    color, _ = load_model(args.color_weights, "color")
    sr, _ = load_model(args.sr_weights, "sr")
    models = {"color": color, "sr": sr}
    if args.fast_sr_weights:
        try:
            models["sr-fast"] = load_model(args.fast_sr_weights, "sr")[0]
        except ColorsrError as exc:
            print(f"(no fast SR model: {exc})")

    layouts = {dtype: conv_peak(device, dtype, seconds) for dtype in dtypes}
    peaks = {dtype: max(v.values()) for dtype, v in layouts.items()}
    mm_peak = matmul_peak(device, seconds)
    d_tile, d_batch = defaults["tile"], defaults["batch_size"]
    pipeline_batches = batches + ([64] if cuda and args.quick else [])
    setups = [("sr-only", 128, 16, 16), ("sr-only", 256, 16, 1), ("sr-only", 256, 16, 4),
              ("sr-only", 384, 16, 1), ("sr-only", 384, 16, 4), ("sr-only", 512, 16, 1),
              ("full", d_tile, 16, d_batch)]
    peak_lines = [f"- {str(dt).replace('torch.', '')}: {v['nchw']:.0f} GFLOP/s NCHW, "
                  f"{v['channels_last']:.0f} GFLOP/s channels-last; **peak = {peaks[dt]:.0f} GFLOP/s**"
                  for dt, v in layouts.items()]
    parts = [f"Machine: {machine()}; device {device}; glibc allocator "
             f"{'as is' if args.no_malloc_tuning else 'tuned (devices.tune_cpu_allocator)'}.", "",
             f"Matrix-product rate (4096x4096 fp32): {mm_peak:.0f} GFLOP/s. Measured conv peak "
             f"(3x3 conv, 128->128 channels, {peak_batch(device)}x96x96), counted as "
             "direct-convolution FLOPs:", "",
             *peak_lines, "",
             "## Stages (one forward pass on 64x64 inputs)", "",
             "GFLOP/image is the network's own work (BatchNorm folded), counted with "
             "torch.utils.flop_counter; the inference form executes ~6 % more for the SR tail fold, "
             "which is not credited. `of peak` = GFLOP/s / peak.", "",
             section(["stage", "variant", "dtype", "batch", "images/s", "GFLOP/image", "GFLOP/s", "of peak"],
                     lambda: stage_rows(models, batches, device, seconds, peaks, variants, dtypes)), "",
             "## Whole pipeline (colourise + SR, through Restorer)", "",
             section(["input", "dtype", "batch", "throughput", "output MP/s"],
                     lambda: pipeline_rows(color, sr, device, seconds, pipeline_batches, default_dtype)), "",
             f"## Tiled restore of a 640x480 input (output 2560x1920); device default: tile {d_tile}, "
             f"batch {d_batch}", "",
             section(["mode", "tiling", "output MP/s", "seconds", "one-pass SR seconds", "cost vs one pass"],
                     lambda: tiled_rows(color, sr, device, seconds, setups, default_dtype)), "",
             "## Bicubic base of the SR output (x4, float32)", "",
             section(["input", "F.interpolate ms", "bicubic_upscale ms", "speed-up"],
                     lambda: bicubic_rows(device, seconds)), "",
             "## Video (`restore_video`: decode, colourise, SR, temporal smoothing, encode)", "",
             section(["clip", "frames", "frames per batch", "frames/s"],
                     lambda: video_rows(color, sr, device, 8 if args.quick else 48, default_dtype))]
    report = "\n".join(parts) + "\n"
    print(report)
    if args.out:
        # Hand-written reading of the numbers lives below NOTES_MARKER and survives a rerun.
        notes = ""
        if args.out.exists() and NOTES_MARKER in (old := args.out.read_text()):
            notes = "\n" + NOTES_MARKER + old.split(NOTES_MARKER, 1)[1]
        command = " ".join(["python benchmarks/bench.py", *sys.argv[1:]])
        args.out.write_text(f"# Performance\n\nCommand: `{command}`\n\n{report}{notes}")


if __name__ == "__main__":
    main()
