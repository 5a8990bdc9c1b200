"""`colorsr train color|sr`, `colorsr export` and `colorsr ensemble`: options -> recipe ->
trainer, with a rich progress bar (iter/s, losses, ETA). The package's __init__ registers
these functions as commands."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Column

from colorsr_cli.cli.common import console, fail, out
from colorsr_cli.errors import ColorsrError
from colorsr_cli.recipe_options import recipe_command
from colorsr_cli.train.recipes import ColorRecipe, SRRecipe


def _reporter(progress: Progress, task):
    from colorsr_cli.train.runlog import Reporter

    if progress.disable:
        return Reporter()

    def on_step(step: int, total: int, metrics: dict[str, float]) -> None:
        text = "  ".join(f"{k} {v:.3g}" for k, v in metrics.items())
        progress.update(task, completed=step, total=total, metrics=text)

    return Reporter(on_step, lambda message: progress.console.print(message, highlight=False))


def training_progress(to: Console, quiet: bool = False) -> Progress:
    """The training progress line: bar, steps and times first and never cut; the metrics last,
    folded onto more lines when the terminal is narrow."""
    return Progress(TextColumn("[bold]train"), BarColumn(bar_width=20), MofNCompleteColumn(),
                    TimeElapsedColumn(), TimeRemainingColumn(),
                    TextColumn("{task.fields[metrics]}", table_column=Column(overflow="fold")),
                    console=to, disable=quiet)


def _run(trainer, recipe, resume: bool) -> None:
    """Train, showing progress; then say where the best model is."""
    # Under torchrun only rank 0 shows progress; the other ranks still report errors.
    quiet = os.environ.get("RANK", "0") != "0"
    progress = training_progress(console, quiet)
    try:
        with progress:
            task = progress.add_task("train", total=None, metrics="")
            run = trainer(recipe, resume=resume, reporter=_reporter(progress, task))
    except (ColorsrError, ValueError) as exc:
        raise fail(str(exc)) from None
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]: resume with the same command and --resume")
        raise typer.Exit(130) from None
    if not quiet:
        out.print(f"best model: {run / 'best.pt'}  (export with: colorsr export {run})", highlight=False)


@recipe_command(ColorRecipe, out=Path("runs/color"))
def train_color_cmd(recipe: ColorRecipe, resume: bool) -> None:
    """Train the colouriser (pix2pix).

    The recipe of Isola et al. 2017, with optional stabilisers (below).
    Example: [bold]colorsr train color --data ./coco --out runs/c1[/]"""
    from colorsr_cli.train.color import train_color

    _run(train_color, recipe, resume)


@recipe_command(SRRecipe, out=Path("runs/sr"))
def train_sr_cmd(recipe: SRRecipe, resume: bool) -> None:
    """Train the super-resolution model (SRGAN).

    The recipe of Ledig et al. 2017: a pixel-loss warm-up, then GAN steps.
    Example: [bold]colorsr train sr --data ./photos --pretrain-steps 2000[/]"""
    from colorsr_cli.train.sr import train_sr

    _run(train_sr, recipe, resume)


# Options export and ensemble share: how the weight file is stored and where its entry goes.
_HALF = typer.Option(True, "--half/--full", help="Store weights as fp16 (half the size).")
_MANIFEST = typer.Option(None, "--into-manifest", help="Also add the entry to this "
                         "weights_manifest.json (bundled if the file lies beside it).")
_DEFAULT = typer.Option(False, "--default", help="With --into-manifest: make it the default.")
_DESCRIPTION = typer.Option("", "--description")
_LICENCE = typer.Option("", "--licence")


def _publish(write: Callable[[], dict], dest: Path, manifest: Path | None, default: bool,
             description: str, licence: str) -> None:
    """write() writes the weight file dest and returns its manifest entry; the entry is added to
    manifest if one is given (bundled when dest lies in its weights/ folder) and printed. Any
    ColorsrError becomes the CLI's one-line failure."""
    from colorsr_cli.export import add_to_manifest

    try:
        entry = write()
        if manifest is not None:
            bundled = dest.resolve().parent == (manifest.resolve().parent / "weights")
            add_to_manifest(entry, manifest, bundled, default, description, licence)
    except ColorsrError as exc:
        raise fail(str(exc)) from None
    out.print_json(json.dumps(entry))


def export(
    run_dir: Path = typer.Argument(..., help="A training run folder (its best.pt is exported)."),
    dest: Path | None = typer.Option(None, "--out", "-o", help="Weight file to write "
                                     "(default: RUN_DIR/export.pt)."),
    name: str | None = typer.Option(None, "--name", help="Manifest name (default: the run folder's name)."),
    half: bool = _HALF,
    checkpoint: Path | None = typer.Option(None, "--checkpoint", help="Export this training checkpoint "
                                           "(e.g. RUN_DIR/last.pt) or weight file (a saved copy of best.pt) "
                                           "instead of best.pt."),
    chroma_gain: float | None = typer.Option(None, "--chroma-gain", help="Colourisers: calibrated gain "
                                             "on the predicted chroma, stored in the file."),
    manifest: Path | None = _MANIFEST, default: bool = _DEFAULT,
    description: str = _DESCRIPTION, licence: str = _LICENCE,
) -> None:
    """Write the inference weight file of a run and print its weights_manifest.json entry.

    Example: [bold]colorsr export runs/c1 --out my-colour.pt[/]"""
    from colorsr_cli.export import export_run

    dest = dest or run_dir / "export.pt"
    _publish(lambda: export_run(run_dir, dest, name or run_dir.name, half, checkpoint, chroma_gain),
             dest, manifest, default, description, licence)


def ensemble(
    members: list[Path] = typer.Argument(..., help="Two or more colouriser weight files (e.g. exports "
                                         "of runs, or bundled files)."),
    dest: Path = typer.Option(..., "--out", "-o", help="Weight file to write."),
    name: str | None = typer.Option(None, "--name", help="Manifest name (default: the file's stem)."),
    half: bool = _HALF,
    chroma_gain: float | None = typer.Option(None, "--chroma-gain", help="Calibrated gain on the "
                                             "averaged chroma (the members' own gains are dropped)."),
    manifest: Path | None = _MANIFEST, default: bool = _DEFAULT,
    description: str = _DESCRIPTION, licence: str = _LICENCE,
) -> None:
    """Combine colourisers into one weight file that averages their chroma, and print its
    weights_manifest.json entry. Costs each member's time at inference.

    Example: [bold]colorsr ensemble a.pt b.pt --out ab.pt --chroma-gain 0.9[/]"""
    from colorsr_cli.export import export_ensemble

    _publish(lambda: export_ensemble(members, dest, name or dest.stem, half, chroma_gain),
             dest, manifest, default, description, licence)
