"""`colorsr video`: options -> a checked film (video.prepare_video, before any model is loaded)
-> restore with a progress bar -> a summary."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import typer
from rich.progress import TextColumn
from rich.table import Table

from colorsr_cli.cli.common import PipelineArgs, console, fail, out, pipeline_options, work_progress
from colorsr_cli.cli.restore import check_scale
from colorsr_cli.errors import ColorsrError

FRAMES_BATCH_OPTION = typer.Option(None, "--batch-size", "-b", min=1, help="Frames per batch "
                                   "(default: 16, and on CPU at most 512x512 input pixels).")


@pipeline_options(batch_option=FRAMES_BATCH_OPTION)
def video(
    source: Path = typer.Argument(..., help="The film to restore (any format ffmpeg/OpenCV can read)."),
    out_path: str | None = typer.Option(None, "--out", "-o", help="Output video, or a folder for it "
                                        "(an existing one, or a name ending in /: created) "
                                        "(default: <input stem>_colorsr.mp4 next to the input)."),
    start: float = typer.Option(0.0, "--start", min=0, help="Start this many seconds into the film."),
    end: float | None = typer.Option(None, "--end", min=0, help="Stop this many seconds into the film "
                                     "(default: its end)."),
    scale: int | None = typer.Option(None, "--scale", "-s", help="Output size relative to the input: "
                                     "4 (default), 2 or 1 (no upscaling)."),
    color_only: bool = typer.Option(False, "--color-only", help="Only colourise: --scale 1 (no "
                                    "super-resolution)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output."),
    pipeline: PipelineArgs = ...,  # --weights ... --precision, from pipeline_options
    codec: str = typer.Option("libx264", "--codec", help="ffmpeg video encoder (e.g. libx264, libx265)."),
    crf: int = typer.Option(18, "--crf", min=0, max=63, help="Constant rate factor: lower is better "
                            "quality and bigger files (18: visually lossless for x264)."),
    temporal_smoothing: float = typer.Option(0.6, "--temporal-smoothing", min=0.0, max=1.0,
                                             help="Weight of the past frames' colour (0: off); "
                                             "reset at scene cuts. Higher is steadier but lags."),
    as_json: bool = typer.Option(False, "--json", help="Print a machine-readable summary on stdout."),
) -> None:
    """Restore a film: colourise and upscale every frame, keep its sound.

    Example: [bold]colorsr video old_film.mp4 --out restored.mp4[/]"""
    from colorsr_cli.video import VideoOptions, prepare_video, restore_video, video_output_path

    check_scale(scale)
    if color_only and scale not in (None, 1):
        raise fail("--color-only is --scale 1: drop --scale")
    scale = 1 if color_only else 4 if scale is None else scale
    if end is not None and end <= start:
        raise fail(f"--end ({end:g}s) must be after --start ({start:g}s)")
    options = VideoOptions(start, end, codec, crf, temporal_smoothing, overwrite=overwrite)
    try:  # before any model is loaded: a wrong file, span, codec or existing output fails fast
        film = prepare_video(source, video_output_path(source, out_path), options)
    except ColorsrError as exc:
        raise fail(str(exc), 1) from None
    try:
        restorer = pipeline.restorer("color-only" if color_only else "full", scale, uint8_output=True)
    except ColorsrError as exc:
        raise fail(str(exc)) from None
    info = film.info
    console.print(f"{source}: {info.width}x{info.height} at {info.fps:.4g} fps -> {film.output} "
                  f"({info.width * scale}x{info.height * scale})", highlight=False, soft_wrap=True)
    progress = work_progress("video", TextColumn("frames"), TextColumn("{task.fields[rate]}"))
    began = time.time()
    try:
        with progress:
            task = progress.add_task("video", total=info.frame_count, rate="")

            def on_frames(done: int, total: int | None) -> None:
                rate = done / max(time.time() - began, 1e-9)
                progress.update(task, completed=done, total=total, rate=f"{rate:.2f} fps")

            result = restore_video(film, restorer, on_frames)
    except KeyboardInterrupt:
        console.print(f"[yellow]interrupted[/]: nothing written to {film.output} (partial file deleted).")
        raise typer.Exit(130) from None
    except ColorsrError as exc:
        raise fail(str(exc), 1) from None
    _report(result, as_json)


def _report(result, as_json: bool) -> None:
    for note in result.notes:
        console.print(f"[yellow]note[/] {note}", highlight=False, soft_wrap=True)
    summary = asdict(result) | {"source": str(result.source), "output": str(result.output),
                                "frames_per_second": round(result.frames / max(result.seconds, 1e-9), 3)}
    if as_json:
        out.print_json(json.dumps(summary))
        return
    table = Table(title="colorsr video")
    for col in ("frames", "size", "fps", "time", "frames/s", "audio", "flicker"):
        table.add_column(col, justify="right")
    table.add_row(str(result.frames), f"{result.size[0]}x{result.size[1]}", f"{result.fps:.4g}",
                  f"{result.seconds:.1f}s", f"{summary['frames_per_second']:.2f}",
                  "kept" if result.audio_kept else "none",
                  "-" if result.flicker is None else f"{result.flicker:.2f}")
    console.print(table)
