"""Count the colours of a photo folder per 10-unit ab bin (chroma_bins.gamut_bins): the prior
behind the class-rebalanced metrics and the colouriser's rebalanced loss.

    python tools/ab_prior.py ../shared/data/train --out colorsr_cli/data/ab_prior.json

Every photo is seen as the evaluation protocol sees it (centre square, area-reduced to 64x64)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from colorsr_cli.chroma_bins import bin_histogram, gamut_bins
from colorsr_cli.color import rgb_to_lab
from colorsr_cli.train.color import center_sample
from colorsr_cli.train.data import PhotoFolder
from colorsr_cli.train.runlog import Reporter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    photos, bins = PhotoFolder(args.data, Reporter()), gamut_bins()
    counts = torch.zeros(len(bins), dtype=torch.float64)
    for start in range(0, len(photos), 256):
        batch = torch.stack([center_sample(photos.load(i), 64)
                             for i in range(start, min(start + 256, len(photos)))])
        counts += bin_histogram(rgb_to_lab(batch)[:, 1:])
    record = {"source": str(args.data), "photos": len(photos), "view": "centre square, area to 64x64",
              "bin_size": 10, "counts": [int(c) for c in counts]}
    args.out.write_text(json.dumps(record) + "\n")
    print(f"{len(photos)} photos, {int(counts.sum())} pixels -> {args.out}")


if __name__ == "__main__":
    main()
