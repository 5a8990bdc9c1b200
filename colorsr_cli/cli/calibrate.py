"""`colorsr calibrate`: a colouriser's chroma gain chosen on its run's held-out photos."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from colorsr_cli.cli.common import out


def calibrate_cmd(
    run_dir: Path = typer.Argument(..., help="A colour training run folder (its hold-out is used)."),
    checkpoint: Path | None = typer.Option(None, "--checkpoint", help="A training checkpoint or "
                                           "weight file (default: RUN_DIR/best.pt)."),
    limit: int = typer.Option(600, "--limit", help="At most this many held-out photos."),
    min_side: int = typer.Option(0, "--min-side", help="Only held-out photos at least this large."),
    gains: list[float] = typer.Option(None, "--gain", help="A gain to try (repeat; default 0.8-1.6)."),
    temperatures: list[float] = typer.Option(None, "--temperature",
                                             help="A temperature to try (bins heads; repeat)."),
    low: float = typer.Option(0.8, "--min-colourfulness", help="Accepted colourfulness, x the truth's."),
    high: float = typer.Option(1.0, "--max-colourfulness", help="Accepted colourfulness, x the truth's."),
) -> None:
    """Pick a colouriser's chroma gain on held-out training photos.

    The recommended setting has the highest hue hit with colourfulness in the accepted range and
    PSNR no lower than gray's. Export with it: colorsr export RUN --chroma-gain G.
    Example: [bold]colorsr calibrate runs/color --min-side 128[/]"""
    from colorsr_cli.calibrate import GAINS, TEMPERATURES, calibrate, holdout_photos, protocol_views
    from colorsr_cli.export import generator_from_checkpoint
    from colorsr_cli.weightfile import load_weight_file

    if checkpoint:
        model, _ = generator_from_checkpoint(run_dir, checkpoint)
    else:
        model, _ = load_weight_file(run_dir / "best.pt")
    photos = [p for p in holdout_photos(run_dir, limit) if min(p.shape[:2]) >= min_side]
    result = calibrate(model, *protocol_views(photos), gains or GAINS, temperatures or TEMPERATURES,
                       (low, high))
    out.print(f"{result.photos} held-out photos; gray: PSNR {result.gray_psnr:.2f} dB, ab error "
              f"{result.gray_ab_error:.2f}; truth colourfulness {result.truth_colourfulness:.1f}")
    table = Table()
    bins = any(s.temperature is not None for s in result.settings)  # a regression head has none
    columns = ("gain", "hue hit", "green", "red", "grayed", "ab/gray", "PSNR-gray", "colour/truth")
    for col in ("temp",) * bins + columns:
        table.add_column(col, justify="right")
    for s in result.settings:
        table.add_row(*([f"{s.temperature:.2f}"] if bins else []), f"{s.gain:.2f}", f"{s.hue_hit:.3f}",
                      f"{s.green_hit:.3f}", f"{s.red_hit:.3f}", f"{s.left_gray:.3f}",
                      f"{s.ab_error_vs_gray:.3f}", f"{s.psnr_minus_gray:+.2f}",
                      f"{s.colourfulness_ratio:.2f}")
    out.print(table)
    best = result.recommended
    if best is None:
        out.print("no setting meets the colourfulness range with PSNR >= gray's")
    else:
        temp = f"temperature {best.temperature} " if best.temperature is not None else ""
        out.print(f"recommended: {temp}chroma gain {best.gain} (hue hit {best.hue_hit:.3f})")
