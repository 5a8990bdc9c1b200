"""Peak memory of `colorsr restore` on large gray scans (plain script, not a test): makes synthetic
scans (a bundled photo's luminance enlarged, with film-like grain) and runs the command under
`/usr/bin/time -v`, one at a time, reporting its peak resident set size and wall time.

    python benchmarks/large_scans.py [--only 24mp] [--keep DIR] [-- extra restore options]

The cases are the ones docs/performance.md lists: 6000x4000 (24 MP) at --scale 2 and 3600x2400
(8.6 MP) at --scale 4 (the default)."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

SAMPLE = Path(__file__).resolve().parents[1] / "docs" / "samples" / "camera.png"
CASES = {"24mp": ((6000, 4000), "2"), "8.6mp": ((3600, 2400), "4")}


def make_scan(path: Path, size: tuple[int, int], seed: int = 0) -> None:
    """A gray PNG of size (width, height): the sample photo enlarged, plus grain (sigma 4 levels)."""
    base = Image.open(SAMPLE).convert("L").resize(size, Image.BICUBIC)
    grain = np.random.default_rng(seed).normal(0, 4, (size[1], size[0]))
    Image.fromarray(np.clip(np.asarray(base) + grain, 0, 255).astype(np.uint8)).save(path, compress_level=1)


def peak_rss(command: list[str]) -> tuple[float, float, int]:
    """(peak RSS in GiB, wall seconds, exit status) of command under /usr/bin/time -v."""
    began = time.time()
    run = subprocess.run(["/usr/bin/time", "-v", *command], capture_output=True, text=True)
    found = re.search(r"Maximum resident set size \(kbytes\): (\d+)", run.stderr)
    if found is None:
        sys.exit(f"no peak RSS from /usr/bin/time:\n{run.stderr[-2000:]}")
    return int(found.group(1)) / 2**20, time.time() - began, run.returncode


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", choices=sorted(CASES), action="append")
    parser.add_argument("--keep", type=Path, help="make (or reuse) the scans in this folder")
    parser.add_argument("extra", nargs="*", help="more `colorsr restore` options, after --")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        print("| scan | option | output | peak RSS | wall s | exit |")
        print("|---|---|---|---|---|---|")
        for name in args.only or list(CASES):
            (w, h), scale = CASES[name]
            scan = folder / f"scan_{w}x{h}.png"
            if not scan.exists():
                make_scan(scan, (w, h))
            out = Path(tmp) / f"out_{name}"
            command = ["colorsr", "restore", str(scan), "--out", str(out), "--scale", scale, "--quiet",
                       "--overwrite", *args.extra]
            gib, seconds, status = peak_rss(command)
            print(f"| {w}x{h} ({w * h / 1e6:.1f} MP) | `--scale {scale}` | {w * int(scale)}x{h * int(scale)} "
                  f"| {gib:.2f} GiB | {seconds:.0f} | {status} |", flush=True)


if __name__ == "__main__":
    main()
