"""What the command modules share: the consoles, option types, error exit, weights loading."""

from __future__ import annotations

from enum import Enum

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

console = Console(stderr=True)
out = Console()


class Ext(str, Enum):
    png = "png"
    jpg = "jpg"
    webp = "webp"


class Precision(str, Enum):
    fp32 = "fp32"
    fp16 = "fp16"
    bf16 = "bf16"


def fail(message: str, code: int = 2) -> typer.Exit:
    console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def download_progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                    TransferSpeedColumn(), TimeRemainingColumn(), console=console, transient=True)


def load_models(weights: list[str], color_weights: str | None, sr_weights: str | None,
                 need_color: bool, need_sr: bool):
    """Resolve --weights / --color-weights / --sr-weights (defaults from the manifest)."""
    from colorsr_cli.weights import load_model, task_of

    chosen: dict[str, str | None] = {"color": color_weights, "sr": sr_weights}
    for item in weights:
        chosen[task_of(item)] = item
    with download_progress() as bar:
        task = bar.add_task("weights", total=None)

        def progress(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)

        color = load_model(chosen["color"], "color", progress=progress)[0] if need_color else None
        sr = load_model(chosen["sr"], "sr", progress=progress)[0] if need_sr else None
    return color, sr
