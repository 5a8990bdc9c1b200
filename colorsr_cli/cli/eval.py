"""`colorsr eval`: measured quality against ground truth and baselines, as a report."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from colorsr_cli.cli.common import Precision, console, device_options, fail, load_models, out
from colorsr_cli.errors import ColorsrError


def eval_cmd(
    paths: list[str] = typer.Argument(..., help="Folders / files / globs of real colour photos."),
    report_dir: Path = typer.Option(Path("eval-report"), "--out", "-o", help="Report folder."),
    ssim: bool = typer.Option(False, "--ssim", help="SSIM on RGB and on Y (Wang et al. 2004)."),
    psnr: bool = typer.Option(False, "--psnr", help="PSNR on RGB and on Y."),
    colorfulness: bool = typer.Option(False, "--colorfulness", help="Hasler-Suesstrunk colourfulness."),
    delta_e: bool = typer.Option(False, "--delta-e", help="Mean ab error and CIEDE2000 in Lab."),
    placement: bool = typer.Option(False, "--placement", help="Colour placement: hue, green and red "
                                   "hit (share of colourful truth pixels given a visible colour within "
                                   "30 degrees of their hue), the share left gray, and Zhang et "
                                   "al.'s raw and rebalanced AuC."),
    niqe: bool = typer.Option(False, "--niqe", help="NIQE (Mittal et al. 2013), no reference: how "
                              "natural the output's statistics are, lower is better; the truth's in the "
                              "title. Needs outputs of at least 192x192."),
    all_metrics: bool = typer.Option(False, "--all", help="Every full-reference metric (default when none "
                                     "is chosen)."),
    protocol: str = typer.Option("standard", "--protocol", help="standard; ssim64 (standard, plus SSIM "
                                 "with both images area-resized to 64x64, the input's size; 'seed' is a "
                                 "deprecated alias); or sr-literature (SR alone as SR papers do: bicubic "
                                 "x1/4 input, Y channel, 4 px border)."),
    weights: list[str] = typer.Option([], "--weights", "-w", help="Weights to evaluate (as restore)."),
    compare_weights: list[str] = typer.Option([], "--compare-weights", help="A second weight set, "
                                              "shown side by side (the other task keeps the default)."),
    batch_size: int = typer.Option(32, "--batch-size", "-b", min=1),
    device: str = typer.Option("auto", "--device", "-d"),
    precision: Precision = typer.Option(Precision.fp32, "--precision"),
    limit: int | None = typer.Option(None, "--limit", help="Only the first N photos (sorted)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON on stdout."),
    by_folder: bool = typer.Option(False, "--by-folder", help="Also a table per top-level folder "
                                   "(summary.json always has them when there are several)."),
) -> None:
    """Score the pipeline and baselines on real photos (protocol: 256x256 truth, 64x64 gray input).

    Example: [bold]colorsr eval ./photos --all --out report[/]"""
    from colorsr_cli.devices import resolve_device
    from colorsr_cli.evaluate import (
        METRIC_GROUPS,
        build_methods,
        evaluate,
        evaluate_sr_literature,
        write_report,
    )
    from colorsr_cli.io import find_images
    from colorsr_cli.pipeline import RestoreOptions, Restorer

    chosen = {"ssim": ssim, "psnr": psnr, "colorfulness": colorfulness, "delta_e": delta_e,
              "placement": placement}
    everything = all_metrics or not any(chosen.values())
    chosen["niqe"] = niqe  # opt-in: slower, and no reference
    metrics = [m for group, names in METRIC_GROUPS.items()
               if chosen[group] or (everything and group != "niqe") for m in names]
    if protocol == "seed":
        console.print("[yellow]--protocol seed is deprecated[/]: it is now called --protocol ssim64",
                      highlight=False)
        protocol = "ssim64"
    if protocol not in ("standard", "ssim64", "sr-literature"):
        raise fail(f"--protocol must be standard, ssim64 or sr-literature, got {protocol!r}")
    if protocol == "ssim64":
        metrics.append("ssim_seed")  # the metric's name in colorsr_cli.metrics
    try:
        dev = resolve_device(device)
        # Measurements default to fp32 everywhere; auto = the device's restore default.
        dtype = device_options(dev, None, None, precision)["dtype"]
        color, sr = load_models(weights, None, None, need_color=True, need_sr=True)

        def restorer(mode: str, c=color, s=sr) -> Restorer:
            return Restorer(c if mode != "sr-only" else None, s if mode != "color-only" else None,
                            RestoreOptions(mode=mode, tile=0, batch_size=batch_size, dtype=dtype), dev)

        compare = None
        if compare_weights:
            c2, s2 = load_models(compare_weights, None, None, need_color=True, need_sr=True)
            compare = restorer("full", c2, s2)
        methods = build_methods(restorer("full"), restorer("color-only"), restorer("sr-only"), compare)
    except ColorsrError as exc:
        raise fail(str(exc)) from None
    jobs, problems = find_images(paths)
    jobs = jobs[:limit] if limit else jobs
    if not jobs:
        raise fail("no images to evaluate")
    if protocol == "sr-literature":
        methods = {"bicubic": None, "sr": None}
        report = evaluate_sr_literature(jobs, restorer("sr-only"), with_niqe=niqe)
    else:
        progress = Progress(TextColumn("[bold]eval"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                            console=console)
        with progress:
            task = progress.add_task("eval", total=len(jobs))
            report = evaluate(jobs, methods, metrics, batch_size,
                              lambda n: progress.update(task, completed=n))
    report.failures += [(str(p), r) for p, r in problems]
    for _file, reason in report.failures:
        console.print(f"[red]failed[/] {reason}", highlight=False, soft_wrap=True)
    paths_written = write_report(report, report_dir, list(methods))
    summary = report.summary()
    if as_json:
        out.print_json(json.dumps(summary))
    else:
        out.print(_table(summary))
        for folder, part in summary.get("by_folder", {}).items() if by_folder else ():
            out.print(_table(part, f"{folder}: "))
        out.print(f"report: {', '.join(str(p) for p in paths_written.values())}", highlight=False)
    if report.failures:
        raise typer.Exit(1)


def _table(summary: dict, prefix: str = "") -> Table:
    """One row per measure, one column per method: fits a terminal whatever the metric count."""
    metrics = summary["metrics"]
    truth = summary["truth"]
    title = f"{prefix or 'colorsr eval: '}{summary['n_images']} photos"
    notes = [f"truth colourfulness {truth['colorfulness']:.1f}"] if truth["colorfulness"] is not None else []
    notes += [f"truth NIQE {truth['niqe']:.2f}"] if "niqe" in truth else []
    table = Table(title=title + (f" ({', '.join(notes)})" if notes else ""))
    rows = list(metrics)
    if "colorfulness" in metrics and truth["colorfulness"] is not None:
        at = rows.index("colorfulness") + 1
        rows[at:at] = ["colorfulness_ratio", "colorfulness_gap"]
    methods = summary["methods"]
    table.add_column("measure")
    for name in methods:
        table.add_column(name, justify="right")
    precise = ("ssim", "hit", "auc", "ratio", "left_gray")
    for m in rows:
        fmt = ".4f" if any(k in m for k in precise) else ".2f"
        table.add_row(m, *(format(values.get(m, float("nan")), fmt) for values in methods.values()))
    return table
