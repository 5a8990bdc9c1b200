"""`colorsr doctor`: what this installation has and what to fix."""

from __future__ import annotations

import json
from dataclasses import asdict

import typer
from rich.table import Table

from colorsr_cli import __version__
from colorsr_cli.cli.common import out


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
