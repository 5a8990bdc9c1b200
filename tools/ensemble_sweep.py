"""Which colourisers to average: every single model and every combination, on held-out TRAINING
photos (never on the test split), at equal colourfulness.

    python tools/ensemble_sweep.py WEIGHTS... --run RUN_DIR [--max-members 3] [--target 0.42]

For each model and each combination of up to --max-members of them (chroma predictions averaged,
as `colorsr ensemble` does), the chroma is scaled over a range of gains and the mean ab error
(against gray's) is interpolated at --target times the truth's colourfulness, so models that
differ in how colourful they are compare fairly. Uses the run's hold-out in the evaluation
protocol's form (tools/calibrate_chroma.py). Sorted best first."""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np
import torch
from calibrate_chroma import holdout_photos, protocol_views  # tools/, beside this script

from colorsr_cli.color import lab_to_rgb, rgb_to_lab
from colorsr_cli.export import with_chroma_gain
from colorsr_cli.metrics import ab_error, colorfulness
from colorsr_cli.weightfile import load_weight_file

GAINS = np.arange(0.5, 1.6, 0.05)


@torch.inference_mode()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights", type=Path, nargs="+")
    parser.add_argument("--run", type=Path, required=True, help="a colour run: its validation hold-out")
    parser.add_argument("--limit", type=int, default=500)
    parser.add_argument("--max-members", type=int, default=2)
    parser.add_argument("--target", type=float, default=0.42, help="colourfulness vs the truth's")
    args = parser.parse_args()
    gray, truth = protocol_views(holdout_photos(args.run, args.limit))
    L = rgb_to_lab(gray)[:, :1]
    base, target = ab_error(gray, truth).mean().item(), colorfulness(truth).mean().item()
    # each model at gain 1 (a file's own chroma gain is dropped, as in an ensemble)
    preds = [with_chroma_gain(load_weight_file(w)[0], 1.0)(L / 50 - 1) * 110 for w in args.weights]

    def at_target(ab: torch.Tensor) -> float:
        points = []
        for gain in GAINS:
            out = lab_to_rgb(torch.cat((L, ab * gain), 1))
            points.append((colorfulness(out).mean().item() / target,
                           ab_error(out, truth).mean().item() / base))
        points.sort()
        return float(np.interp(args.target, *zip(*points)))

    names = [w.stem for w in args.weights]
    rows = []
    for k in range(1, min(args.max_members, len(preds)) + 1):
        for combo in itertools.combinations(range(len(preds)), k):
            rows.append((at_target(sum(preds[i] for i in combo) / k), " + ".join(names[i] for i in combo)))
            print(f"{rows[-1][0]:.4f}  {rows[-1][1]}", flush=True)
    print(f"\nab error vs gray at {args.target}x the truth's colourfulness, best first "
          f"({len(gray)} held-out photos):")
    for err, name in sorted(rows):
        print(f"{err:.4f}  {name}")


if __name__ == "__main__":
    main()
