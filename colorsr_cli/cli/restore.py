"""`colorsr restore`: options -> a plan of work (batch.plan_restore) -> restore with a progress
bar -> a summary."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer
from rich.progress import TaskProgressColumn, TextColumn
from rich.table import Table

from colorsr_cli.cli.common import (
    Colorize,
    Ext,
    PipelineArgs,
    console,
    fail,
    out,
    pipeline_options,
    work_progress,
)
from colorsr_cli.errors import ColorsrError
from colorsr_cli.io import PNG_LEVEL


@pipeline_options()
def restore(
    paths: list[str] = typer.Argument(..., help="Image files, folders (searched recursively) or globs."),
    out_dir: Path | None = typer.Option(None, "--out", "-o", help="Output folder; the input tree is "
                                        "mirrored there. Default: next to each input."),
    suffix: str | None = typer.Option(None, "--suffix", help="Added to output file names "
                                      "(default: '' with --out, '_colorsr' without)."),
    ext: Ext | None = typer.Option(None, "--ext", help="Output format (default: the input's)."),
    scale: int | None = typer.Option(None, "--scale", "-s", help="Output size relative to the input: "
                                     "4 (default), 2 (the x4 network's tiles reduced as they are "
                                     "made) or 1 (no upscaling)."),
    colorize: Colorize | None = typer.Option(None, "--colorize", help="auto (default): colourise "
                                             "gray and toned photos, keep colour photos' colour; "
                                             "always; never."),
    color_only: bool = typer.Option(False, "--color-only", help="Only colourise: --colorize always "
                                    "--scale 1."),
    sr_only: bool = typer.Option(False, "--sr-only", help="Only upscale: --colorize never."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs "
                                   "(default: skip them, so a rerun resumes)."),
    png_level: int = typer.Option(PNG_LEVEL, "--png-level", min=0, max=9, help="PNG compression, "
                                  "0-9: higher is smaller and slower (1: 4.5x faster than 6, "
                                  "22% larger)."),
    pipeline: PipelineArgs = ...,  # --weights ... --precision, from pipeline_options
    max_pixels: int = typer.Option(100_000_000, "--max-pixels", help="Refuse larger images "
                                   "(decompression-bomb guard)."),
    as_json: bool = typer.Option(False, "--json", help="Print a machine-readable summary on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only errors and the summary."),
) -> None:
    """Restore photos: colourise gray ones, then upscale 4x. Colour photos keep their colour.

    Example: [bold]colorsr restore ./album --out ./restored[/]"""
    from colorsr_cli.batch import OutputPlan, plan_restore
    from colorsr_cli.distributed import current_shard, gather_to_main

    began = time.time()
    mode, keep_colour, scale = _restore_mode(colorize, color_only, sr_only, scale)
    shard = current_shard()  # under torchrun: this rank's share of the inputs and its device
    plan = OutputPlan.choose(out_dir, suffix, ext.value if ext else None, overwrite, png_level)
    work = plan_restore(paths, plan, shard)
    if shard.main:
        _print_failures(work.refused)
    # Planned before any model is loaded: a rerun with nothing left to do ends here, at once.
    if shard.world == 1 and not work.pending:
        _print_failures(work.settled())
        _summarise((work.settled(), time.time() - began), work.problems, as_json, quiet, plan)
        return
    try:
        restorer = pipeline.restorer(mode, scale, shard.local_rank, keep_colour=keep_colour,
                                     uint8_output=True)
    except ColorsrError as exc:
        raise fail(str(exc)) from None
    results, seconds = _run_with_progress(work.planned, restorer, plan, max_pixels, quiet or not shard.main)
    gathered = gather_to_main((results, seconds), shard)
    if gathered is None:  # not rank 0: rank 0 reports for everyone
        return
    merged = work.refused + [r for part, _ in gathered for r in part]
    _summarise((merged, max(t for _, t in gathered)), work.problems, as_json, quiet, plan)


def _restore_mode(colorize, color_only: bool, sr_only: bool, scale: int | None
                  ) -> tuple[str, bool, int]:
    """(pipeline mode, keep_colour, scale) from --colorize, --color-only, --sr-only, --scale."""
    if color_only and sr_only:
        raise fail("--color-only and --sr-only exclude each other")
    check_scale(scale)
    chosen = getattr(colorize, "value", colorize)
    if color_only:
        if chosen not in (None, "always") or scale not in (None, 1):
            raise fail("--color-only is --colorize always --scale 1: drop the other option")
        return "color-only", False, 1
    if sr_only:
        if chosen not in (None, "never"):
            raise fail("--sr-only is --colorize never: drop --colorize")
        chosen = "never"
    scale = 4 if scale is None else scale
    if chosen == "never":
        if scale == 1:
            raise fail("--colorize never with --scale 1 leaves nothing to do")
        return "sr-only", False, scale
    return "full", chosen in (None, "auto"), scale


def check_scale(scale: int | None) -> None:
    if scale is not None and scale not in (1, 2, 4):
        raise fail(f"--scale must be 1, 2 or 4, got {scale}")


def _print_failures(results) -> None:
    for result in results:
        if result.status == "failed":
            console.print(f"[red]failed[/] {result.reason}", highlight=False, soft_wrap=True)


def _run_with_progress(planned, restorer, plan, max_pixels, quiet):
    from colorsr_cli.batch import restore_planned

    start = time.time()
    progress = work_progress("restore", TaskProgressColumn(), TextColumn("{task.fields[rate]}"), quiet=quiet)
    with progress:
        task = progress.add_task("restore", total=len(planned), rate="")
        done = 0

        def on_result(result) -> None:
            nonlocal done
            if result.status == "failed":
                progress.console.print(f"[red]failed[/] {result.reason}", highlight=False, soft_wrap=True)
            elif result.notes and not quiet:
                progress.console.print(f"[yellow]note[/] {result.source}: {'; '.join(result.notes)}",
                                       highlight=False)
            if result.status == "done":
                done += 1
            rate = done / max(time.time() - start, 1e-9)
            progress.update(task, advance=1, rate=f"{rate:.2f} img/s")

        try:
            results = restore_planned(planned, restorer, plan, on_result, max_pixels)
        except KeyboardInterrupt:
            progress.stop()
            console.print("[yellow]interrupted[/]: finished outputs are complete; rerun to continue.")
            raise typer.Exit(130) from None
    return results, time.time() - start


def _summarise(run, problems, as_json: bool, quiet: bool, plan) -> None:
    from colorsr_cli.batch import OWN_OUTPUT

    results, seconds = run
    counts = {s: sum(r.status == s for r in results) for s in ("done", "skipped", "failed")}
    counts["failed"] += len(problems)
    for path, reason in problems:
        console.print(f"[red]failed[/] {path}: {reason}", highlight=False, soft_wrap=True)
    own = [r for r in results if r.status == "skipped" and r.reason == OWN_OUTPUT]
    kept = sum(r.kept_colour for r in results if r.status == "done")
    if not quiet:
        for line in _summary_lines(results, own, kept, plan):
            console.print(line, highlight=False, soft_wrap=True)
    summary = {
        **counts, "kept_colour": kept, "own_outputs_skipped": len(own), "seconds": round(seconds, 3),
        "images_per_second": round(counts["done"] / seconds, 3) if seconds > 0 else None,
        "failures": [{"file": str(r.source), "reason": r.reason} for r in results if r.status == "failed"]
        + [{"file": str(p), "reason": reason} for p, reason in problems],
        "outputs": [str(r.output) for r in results if r.status == "done"],
    }
    if as_json:  # ASCII: a file name that is not UTF-8 stays a \udcXX escape instead of crashing stdout
        out.print_json(json.dumps(summary), ensure_ascii=True)
    else:
        table = Table(title="colorsr restore", show_header=True)
        for col in ("done", "skipped", "failed", "time", "images/s"):
            table.add_column(col, justify="right")
        table.add_row(str(counts["done"]), str(counts["skipped"]), str(counts["failed"]),
                      f"{seconds:.1f}s", f"{summary['images_per_second'] or 0:.2f}")
        console.print(table)
    if counts["failed"]:
        raise typer.Exit(1)


def _summary_lines(results, own, kept: int, plan) -> list[str]:
    """What a user should hear after a restore besides the counts: what was left alone, what
    kept its colour, where the outputs are."""
    lines = []
    if own:
        names = ", ".join(str(r.source.name) for r in own[:3]) + (", ..." if len(own) > 3 else "")
        lines.append(f"[yellow]note[/] skipped {len(own)} of colorsr's own outputs ({names})")
    done = [r for r in results if r.status == "done"]
    if not done and not any(r.status == "failed" for r in results):
        existing = sum(r.status == "skipped" for r in results) - len(own)
        lines.append(f"nothing to do: {existing} outputs already exist (--overwrite redoes them)"
                     if existing else "nothing to do: no input to restore")
    if kept:
        lines.append(f"{kept} colour photo{'s' if kept > 1 else ''} kept {'their' if kept > 1 else 'its'} "
                     "colour (only upscaled); --colorize always colourises them too")
    if done:
        where = (f"in {plan.out_dir}" if plan.out_dir is not None
                 else f"next to their inputs, named *{plan.suffix}.*")
        lines.append(f"{len(done)} output{'s' if len(done) > 1 else ''} written {where}")
    return lines
