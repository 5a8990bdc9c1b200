"""Video throughput and flicker with the shipped weights (plain script, not a test).

    python benchmarks/video_bench.py [--frames 48]

Makes two static clips from a bundled sample photo with per-frame noise (sigma 4/255), the
worst case for chroma flicker: 64x64 (-> 256x256) and 320x240 (-> 1280x960). Restores each
with temporal smoothing off and at the default, and reports frames/s and flicker (mean |ab|
change between consecutive output frames, Lab units)."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import cv2
import numpy as np
import torch

from colorsr_cli.pipeline import RestoreOptions, Restorer
from colorsr_cli.video import VideoOptions, flicker, prepare_video, restore_video
from colorsr_cli.weights import load_model

SAMPLE = Path(__file__).parents[1] / "docs" / "samples" / "chelsea.png"


def make_clip(path: Path, size: tuple[int, int], frames: int, fps: float = 24.0) -> None:
    gray = cv2.resize(cv2.imread(str(SAMPLE), cv2.IMREAD_GRAYSCALE), size, interpolation=cv2.INTER_AREA)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    rng = np.random.default_rng(0)
    for _ in range(frames):
        noisy = np.clip(gray + rng.normal(0, 4, gray.shape), 0, 255).astype(np.uint8)
        writer.write(cv2.cvtColor(noisy, cv2.COLOR_GRAY2BGR))
    writer.release()


def output_flicker(path: Path) -> float:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while (ok_frame := cap.read())[0]:
        frames.append(torch.from_numpy(cv2.cvtColor(ok_frame[1], cv2.COLOR_BGR2RGB)).permute(2, 0, 1) / 255)
    cap.release()
    return flicker(frames)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    color, _ = load_model(None, "color")
    sr, _ = load_model(None, "sr")
    restorer = Restorer(color, sr, RestoreOptions(batch_size=args.batch_size, uint8_output=True))
    print("| clip | output | smoothing | frames/s | flicker before SR | flicker of output |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for size in ((64, 64), (320, 240)):
            clip = Path(tmp) / f"clip{size[0]}.mp4"
            make_clip(clip, size, args.frames)
            for smoothing in (0.0, VideoOptions().temporal_smoothing):
                out = Path(tmp) / f"out{size[0]}_{smoothing}.mp4"
                film = prepare_video(clip, out, VideoOptions(temporal_smoothing=smoothing))
                result = restore_video(film, restorer)
                print(f"| {size[0]}x{size[1]}, {result.frames} frames | {result.size[0]}x{result.size[1]} | "
                      f"{smoothing} | {result.frames / result.seconds:.2f} | {result.flicker:.3f} | "
                      f"{output_flicker(out):.3f} |")


if __name__ == "__main__":
    main()
