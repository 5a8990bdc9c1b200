"""The `colorsr` command line: parse options, call the library, show progress and results.
This package is the only part of colorsr that talks to the terminal; each command is a module
(restore, video, weights, eval, train, calibrate, doctor) and common holds what they share."""

from __future__ import annotations

import signal
import sys
import threading

import typer

from colorsr_cli import __version__
from colorsr_cli.cli import calibrate, doctor, eval, restore, train, video, weights
from colorsr_cli.cli.common import console, out
from colorsr_cli.errors import ColorsrError

app = typer.Typer(help="Restore old photos and films: colourise grayscale images and upscale them 4x.",
                  no_args_is_help=True, rich_markup_mode="rich")
train_app = typer.Typer(help="Train the colouriser (pix2pix) or the super-resolution model (SRGAN).",
                        no_args_is_help=True)
app.add_typer(weights.app, name="weights")
app.add_typer(train_app, name="train")


def _version(value: bool) -> None:
    if value:
        out.print(f"colorsr {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Show the version and exit.")) -> None:
    """colorsr: old photos in, colour 4x photos out."""


app.command()(restore.restore)
app.command()(video.video)
app.command()(doctor.doctor)
app.command("eval")(eval.eval_cmd)
app.command()(train.export)
app.command()(train.ensemble)
app.command("calibrate")(calibrate.calibrate_cmd)
train_app.command("color")(train.train_color_cmd)
train_app.command("sr")(train.train_sr_cmd)


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
