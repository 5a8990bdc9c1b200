"""Training pairs for a student SR model taught by a teacher (distillation): a 256x256 view of
a real photo, its second-order degraded quarter-size copy (colorsr_cli.degrade.degrade_real),
and the teacher's x4 output of that copy as the student's target.

    python tools/teacher_pairs.py PHOTOS... OUT [--count 900] [--teacher realesrgan-x4plus]

Writes OUT/lr/NNNNN.png (the degraded input), OUT/target/NNNNN.png (the teacher's output),
OUT/hr/NNNNN.png (the truth) and OUT/pairs.json (source photo of each pair). Each pair is drawn
from its own seed (--seed, N), so an interrupted run continues where it stopped and a larger
--count adds pairs without changing the existing ones. Train on them with
`colorsr train sr --data OUT --pairs`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from colorsr_cli.degrade import degrade_real
from colorsr_cli.evaluate import protocol_resize
from colorsr_cli.io import find_images, read_image, write_image_atomic
from colorsr_cli.pipeline import RestoreOptions, Restorer, to_tensor
from colorsr_cli.weights import load_model

SIZE = 256


def random_view(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray | None:
    """A SIZE x SIZE crop after reducing the shorter side to a random length in
    [SIZE, min(shorter side, 2 SIZE)] by area; None when the photo is smaller than SIZE."""
    h, w = rgb.shape[:2]
    if min(h, w) < SIZE:
        return None
    side = int(rng.integers(SIZE, min(h, w, 2 * SIZE) + 1))
    f = side / min(h, w)
    scaled = protocol_resize(rgb, (max(SIZE, round(w * f)), max(SIZE, round(h * f))))
    y = int(rng.integers(0, scaled.shape[0] - SIZE + 1))
    x = int(rng.integers(0, scaled.shape[1] - SIZE + 1))
    return np.ascontiguousarray(scaled[y:y + SIZE, x:x + SIZE])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photos", nargs="+")
    parser.add_argument("out", type=Path)
    parser.add_argument("--count", type=int, default=900)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--teacher", default="realesrgan-x4plus")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    jobs, _ = find_images(args.photos)
    if not jobs:
        raise SystemExit("no photos found")
    order = np.random.default_rng(args.seed).permutation(len(jobs))
    teacher, _ = load_model(args.teacher, "sr")
    # The teacher runs as restore runs it (its edge padding included), on whole inputs.
    restorer = Restorer(None, teacher, RestoreOptions(mode="sr-only", tile=0, batch_size=args.batch))
    index_path = args.out / "pairs.json"
    index = json.loads(index_path.read_text()) if index_path.exists() else {}
    pending: list[tuple[str, np.ndarray, np.ndarray, str]] = []

    def flush() -> None:
        targets = restorer.restore([to_tensor(p[1].astype(np.float32) / 255) for p in pending])
        for (name, lr, hr, source), target in zip(pending, targets):
            write_image_atomic(args.out / "hr" / name, hr)
            write_image_atomic(args.out / "lr" / name, lr)
            # Written last: a pair whose target exists is complete.
            write_image_atomic(args.out / "target" / name, target.permute(1, 2, 0).numpy())
            index[name] = source
        index_path.write_text(json.dumps(index, indent=0, sort_keys=True))
        pending.clear()
        print(f"{len(index)} pairs", flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    n, k = 0, 0
    while n < args.count and k < 20 * args.count:
        job = jobs[order[k % len(jobs)]]
        k += 1
        name = f"{n:05d}.png"
        rng = np.random.default_rng([args.seed, n])
        if (args.out / "target" / name).exists():
            n += 1
            continue
        view = random_view(read_image(job.source).rgb, rng)
        if view is None:
            continue
        pending.append((name, degrade_real(view, rng), view, str(job.relative)))
        n += 1
        if len(pending) == args.batch:
            flush()
    if pending:
        flush()


if __name__ == "__main__":
    main()
