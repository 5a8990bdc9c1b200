"""What the command modules share: the consoles, option types, the options of the commands that
run the pipeline (written once, see pipeline_options), error exit, weights loading."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass, fields
from enum import Enum

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from colorsr_cli.errors import ColorsrError

console = Console(stderr=True)
out = Console()


# Options shared by the commands that run the pipeline (restore, video).
TILE_OPTION = typer.Option(None, "--tile", "-t", min=0, help="SR tile size, input pixels (0: no tiles) "
                           "(default: 512 on CPU, 256 on GPU).")
BATCH_OPTION = typer.Option(None, "--batch-size", "-b", min=1, help="Tiles/images per forward pass "
                            "(default: 16, and on CPU at most 512x512 input pixels per pass).")
TILE_PAD_OPTION = typer.Option(16, "--tile-pad", min=0, help="Overlap context around each tile.")
COLOR_SIZE_OPTION = typer.Option(128, "--color-size", min=16,
                                 help="Long side of the colouriser's working resolution.")
SATURATION_OPTION = typer.Option(1.0, "--saturation", min=0.0, help="Gain on the predicted colour "
                                 "(chroma): below 1 tones colours down, above 1 makes them bolder.")
DEVICE_OPTION = typer.Option("auto", "--device", "-d", help="auto, cpu, cuda, cuda:N or mps.")
COLOR_WEIGHTS_OPTION = typer.Option(None, "--color-weights", help="Colouriser weights (file or name).")
SR_WEIGHTS_OPTION = typer.Option(None, "--sr-weights", help="Super-resolution weights (file or name).")


# --model names -> the SR weights they stand for (None: the manifest's default).
SR_MODELS: dict[str, str | None] = {
    "default": None,
    "faithful": "colorsr-sr-v2",
    "clean": "colorsr-sr-clean-v1",
    "fast": "colorsr-sr-fast-v2",
    "realesrgan": "realesrgan-x4plus",
}


# The --model choices: SR_MODELS' names.
ModelChoice = Enum("ModelChoice", {name: name for name in SR_MODELS}, type=str)


MODEL_OPTION = typer.Option(ModelChoice.default, "--model", "-m",
                            help=f"default = faithful: restores the detail of clean scans, but sharpens "
                            f"noise and JPEG blocks too ({SR_MODELS['faithful']}); clean: as fast, taught "
                            f"by Real-ESRGAN to clean noisy, blurred, JPEG-compressed scans, smooths fine "
                            f"texture ({SR_MODELS['clean']}); fast: {SR_MODELS['fast']}, 2.1x faithful's "
                            f"images/s, less sharp; realesrgan: Real-ESRGAN x4plus "
                            f"({SR_MODELS['realesrgan']}), the teacher of clean, sharper texture, 60x slower "
                            "than faithful (quality in docs/models.md). --sr-weights wins.")


class Ext(str, Enum):
    png = "png"
    jpg = "jpg"
    webp = "webp"


class Colorize(str, Enum):
    auto = "auto"
    always = "always"
    never = "never"


class Precision(str, Enum):
    auto = "auto"
    fp32 = "fp32"
    fp16 = "fp16"
    bf16 = "bf16"


PRECISION_OPTION = typer.Option(Precision.auto, "--precision", help="Compute precision: auto = bf16 "
                                "where the GPU or CPU computes it natively, else fp32 (fp16/bf16 autocast; "
                                "fp16 needs a GPU).")


def device_options(device, tile: int | None, batch_size: int | None, precision: Precision) -> dict:
    """RestoreOptions fields that default per device: tile, batch_size, dtype, and the memory
    budget that may lower a default tile or batch for a large image (memory.default_budget)."""
    from colorsr_cli.devices import resolve_precision
    from colorsr_cli.memory import default_budget
    from colorsr_cli.pipeline import default_options

    chosen = default_options(device)
    name = chosen["precision"] if precision is Precision.auto else precision.value
    return {"tile": chosen["tile"] if tile is None else tile,
            "batch_size": chosen["batch_size"] if batch_size is None else batch_size,
            # an explicit --batch-size is taken as it is; the default one is also capped in pixels
            "batch_pixels": chosen["batch_pixels"] if batch_size is None else 0,
            "dtype": resolve_precision(name, device),
            "memory_budget": default_budget(device), "tile_fixed": tile is not None,
            "batch_fixed": batch_size is not None}


WEIGHTS_OPTION = typer.Option([], "--weights", "-w", help="A weight file or manifest name; its task "
                              "(colour or SR) decides which model it replaces.")


@dataclass(frozen=True)
class PipelineArgs:
    """The options every command that restores (restore, video) takes: which weights, how the
    networks run. A command declares a parameter `pipeline: PipelineArgs` and pipeline_options
    puts these options in its place."""

    weights: list[str]
    color_weights: str | None
    sr_weights: str | None
    model: ModelChoice
    batch_size: int | None
    tile: int | None
    tile_pad: int
    color_size: int
    saturation: float
    device: str
    precision: Precision

    def restorer(self, mode: str, scale: int, local_rank: int = 0, **options):
        """The Restorer these options describe, its models loaded (weights downloaded with a
        progress bar). Raises ColorsrError (unknown weights, no such device)."""
        from colorsr_cli.devices import resolve_device
        from colorsr_cli.pipeline import RestoreOptions, Restorer

        dev = resolve_device(self.device, local_rank)
        chosen = RestoreOptions(mode=mode, scale=scale, tile_pad=self.tile_pad, color_size=self.color_size,
                                saturation=self.saturation, **options,
                                **device_options(dev, self.tile, self.batch_size, self.precision))
        color, sr = load_models(self.weights, self.color_weights, self.sr_weights,
                                need_color=mode != "sr-only", need_sr=mode != "color-only" and scale > 1,
                                model=self.model)
        return Restorer(color, sr, chosen, dev)


def pipeline_options(batch_option=BATCH_OPTION) -> Callable:
    """Decorator: the command's `pipeline: PipelineArgs` parameter becomes PipelineArgs' options
    (--weights, --color-weights, ..., --precision) at that place in its signature, so Typer shows
    them there; the command receives them as one PipelineArgs. batch_option: the command's own
    --batch-size (its help says what a batch is)."""
    defaults = {"weights": WEIGHTS_OPTION, "color_weights": COLOR_WEIGHTS_OPTION,
                "sr_weights": SR_WEIGHTS_OPTION, "model": MODEL_OPTION, "batch_size": batch_option,
                "tile": TILE_OPTION, "tile_pad": TILE_PAD_OPTION, "color_size": COLOR_SIZE_OPTION,
                "saturation": SATURATION_OPTION, "device": DEVICE_OPTION, "precision": PRECISION_OPTION}
    hints = inspect.get_annotations(PipelineArgs, eval_str=True)
    shared = [inspect.Parameter(f.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=defaults[f.name],
                                annotation=hints[f.name]) for f in fields(PipelineArgs)]

    def decorate(command: Callable) -> Callable:
        signature = inspect.signature(command, eval_str=True)
        own = list(signature.parameters.values())
        at = [p.name for p in own].index("pipeline")
        params = own[:at] + shared + own[at + 1:]

        @functools.wraps(command)
        def with_options(**kwargs):
            pipeline = PipelineArgs(**{p.name: kwargs.pop(p.name) for p in shared})
            return command(pipeline=pipeline, **kwargs)

        with_options.__signature__ = signature.replace(parameters=params)
        with_options.__annotations__ = {p.name: p.annotation for p in params}
        return with_options

    return decorate


def fail(message: str, code: int = 2) -> typer.Exit:
    console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def work_progress(label: str, *columns: ProgressColumn, quiet: bool = False) -> Progress:
    """The progress line of restore and video: label, bar, done/total, the command's own columns,
    elapsed and remaining time."""
    return Progress(TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(), *columns,
                    TimeElapsedColumn(), TimeRemainingColumn(), console=console, disable=quiet)


def download_progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                    TransferSpeedColumn(), TimeRemainingColumn(), console=console, transient=True)


def load_models(weights: list[str], color_weights: str | None, sr_weights: str | None,
                 need_color: bool, need_sr: bool, model: str = "default"):
    """Resolve --weights / --color-weights / --sr-weights (defaults from the manifest). Every
    inference command comes through here, so this is also where the allocator is tuned."""
    from colorsr_cli.devices import tune_cpu_allocator
    from colorsr_cli.weights import load_model, task_of

    tune_cpu_allocator()
    model = getattr(model, "value", model)  # a ModelChoice from the CLI, or a plain string
    if model not in SR_MODELS:
        raise ColorsrError(f"--model must be one of {', '.join(SR_MODELS)}, got {model!r}")
    if sr_weights is None:
        sr_weights = SR_MODELS[model]
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
