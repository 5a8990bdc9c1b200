"""`colorsr train color|sr`, `colorsr export` and `colorsr ensemble`: options -> recipe ->
trainer, with a rich progress bar (iter/s, losses, ETA). cli.py registers these functions as
commands."""

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


def _fraction(value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise typer.BadParameter(f"{value:g} is not between 0 and 1")
    return value


_HOLDOUT_SEED = typer.Option(0, "--holdout-seed", help="Seed of the photos held out for validation when "
                             "there is no --val; apart from --seed, so runs that differ in --seed (or a "
                             "fine-tune of one) validate on the same photos. --resume keeps the run's.")


def _reporter(progress: Progress, task):
    from colorsr_cli.train.common import Reporter

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


def _run(trainer, recipe, resume: bool) -> Path:
    # Under torchrun only rank 0 shows progress; the other ranks still report errors.
    quiet = os.environ.get("RANK", "0") != "0"
    progress = training_progress(console, quiet)
    try:
        with progress:
            task = progress.add_task("train", total=None, metrics="")
            return trainer(recipe, resume=resume, reporter=_reporter(progress, task))
    except (ColorsrError, ValueError) as exc:
        raise fail(str(exc)) from None
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]: resume with the same command and --resume")
        raise typer.Exit(130) from None


def train_color_cmd(
    data: Path = typer.Option(..., "--data", help="Folder of colour photos (searched recursively)."),
    out_dir: Path = typer.Option(Path("runs/color"), "--out", help="Run folder."),
    val: Path | None = typer.Option(None, "--val", help="Validation folder (default: hold out 2%)."),
    epochs: int = typer.Option(30, "--epochs"), max_steps: int | None = typer.Option(None, "--max-steps"),
    batch_size: int = typer.Option(16, "--batch-size"), lr: float = typer.Option(2e-4, "--lr"),
    l1_weight: float = typer.Option(100.0, "--l1-weight", help="Weight of L1 next to the GAN loss."),
    pixel_loss: str = typer.Option("l1", "--pixel-loss", help="The term --l1-weight scales: l1 "
                                   "(pix2pix's) or euclidean (distance in the ab plane, the ab error "
                                   "metric)."),
    width: int = typer.Option(32, "--width", help="U-Net width of the first level."),
    depth: int = typer.Option(3, "--depth", help="U-Net downsamplings."),
    size: int = typer.Option(64, "--size", help="Training resolution."),
    disc_sigmoid: bool = typer.Option(True, "--disc-sigmoid/--lsgan", help="Sigmoid discriminator "
                                      "trained with MSE, or least-squares GAN (raw score, no saturation)."),
    adv_weight: float = typer.Option(1.0, "--adv-weight", help="Weight of the adversarial term."),
    pretrain_steps: int = typer.Option(0, "--pretrain-steps", help="L1-only steps before the GAN phase."),
    ema: float = typer.Option(0.0, "--ema", help="EMA decay of the generator's weights (e.g. 0.999); "
                              "the average is validated and exported. 0 = off."),
    lr_decay_start: float = typer.Option(1.0, "--lr-decay-start", help="Fraction of the run after which "
                                         "the lr decays linearly to 0 (pix2pix: 0.5). 1 = constant."),
    native_resample: float = typer.Option(
        0.0, "--native-resample", callback=_fraction,  # checked here: a range would widen --help
        help="Fraction (0 to 1) of photos already at the training size shown softened, as the "
             "evaluation protocol shows small photos: enlarged x4 (bicubic), reduced back (area)."),
    init_weights: Path | None = typer.Option(
        None, "--init", help="Start the generator from this colouriser weight file (same --width and "
        "--depth), e.g. a bundled model's file: a fine-tune. The discriminator starts fresh."),
    cache_photos: bool = typer.Option(False, "--cache/--no-cache", help="Decode every photo once and "
                                      "keep it in memory (3 bytes a pixel): small photos on a GPU."),
    head: str = typer.Option("regression", "--head", help="regression (ab through a tanh) or bins "
                             "(a distribution over quantised ab, rebalanced: livelier colour)."),
    ce_weight: float = typer.Option(1.0, "--ce-weight", help="Weight of a bins head's cross-entropy."),
    temperature: float = typer.Option(0.38, "--temperature", help="Annealed-mean temperature (bins)."),
    rebalance_mix: float | None = typer.Option(
        None, "--rebalance-mix", help="Class rebalancing: loss weights from the "
        "inverse colour prior mixed with this share of uniform (1 = none; default 0.5 with --head "
        "bins, 1 otherwise)."),
    global_features: bool = typer.Option(False, "--global-features",
                                         help="Fuse image-level features into the decoder."),
    class_folders: str | None = typer.Option(
        None, "--class-folders", help="Subfolder of --data whose folders are class labels: trains "
        "an auxiliary classifier on the image-level features."),
    class_weight: float = typer.Option(0.1, "--class-weight", help="Weight of the class loss."),
    disc_lr: float | None = typer.Option(None, "--disc-lr", help="Discriminator lr (default --lr)."),
    holdout_min_side: int = typer.Option(0, "--holdout-side", help="Hold out only photos with "
                                         "a shorter side of at least this many px (0 = any)."),
    val_fraction: float = typer.Option(0.02, "--val-fraction", help="Share of the (eligible) photos "
                                       "held out when there is no --val."),
    select_by: str = typer.Option("l1", "--select-by", help="What picks best.pt: l1 or hue_hit."),
    val_every: int | None = typer.Option(None, "--val-every", help="Steps (default: each epoch)."),
    checkpoint_every: int = typer.Option(500, "--checkpoint-every", help="Steps between last.pt "
                                         "saves (a fast GPU wants fewer, larger intervals)."),
    seed: int = typer.Option(0, "--seed"), holdout_seed: int = _HOLDOUT_SEED,
    device: str = typer.Option("auto", "--device"),
    amp: bool = typer.Option(True, "--amp/--no-amp",
                             help="bf16 mixed precision (CUDA, and CPUs with native bf16)."),
    workers: int = typer.Option(0, "--workers", help="Data-loading processes."),
    threads: int | None = typer.Option(None, "--threads", help="CPU threads for torch."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from last.pt."),
) -> None:
    """Train the colouriser (pix2pix).

    The recipe of Isola et al. 2017, with optional stabilisers (below).
    Example: [bold]colorsr train color --data ./coco --out runs/c1[/]"""
    from colorsr_cli.train.color import ColorRecipe, train_color

    recipe = ColorRecipe(data=str(data), out=str(out_dir), val=str(val) if val else None, size=size,
                         epochs=epochs, max_steps=max_steps, batch_size=batch_size, lr=lr,
                         l1_weight=l1_weight, pixel_loss=pixel_loss, width=width, depth=depth,
                         disc_sigmoid=disc_sigmoid,
                         adv_weight=adv_weight, pretrain_steps=pretrain_steps, ema=ema,
                         lr_decay_start=lr_decay_start, native_resample=native_resample,
                         init_weights=str(init_weights) if init_weights else None,
                         cache_photos=cache_photos, val_every=val_every, seed=seed, holdout_seed=holdout_seed,
                         checkpoint_every=checkpoint_every, device=device, amp=amp, workers=workers,
                         threads=threads, head=head, ce_weight=ce_weight, temperature=temperature,
                         rebalance_mix=rebalance_mix, global_features=global_features,
                         class_folders=class_folders, class_weight=class_weight, disc_lr=disc_lr,
                         holdout_min_side=holdout_min_side, val_fraction=val_fraction,
                         select_by=select_by)
    run = _run(train_color, recipe, resume)
    if os.environ.get("RANK", "0") == "0":
        out.print(f"best model: {run / 'best.pt'}  (export with: colorsr export {run})", highlight=False)


def train_sr_cmd(
    data: Path = typer.Option(..., "--data", help="Folder of photos; those with a shorter side "
                              "below --hr-size are skipped."),
    out_dir: Path = typer.Option(Path("runs/sr"), "--out", help="Run folder."),
    val: Path | None = typer.Option(None, "--val", help="Validation folder (default: hold out 5%)."),
    hr_size: int = typer.Option(256, "--hr-size", help="HR crop size (LR = hr-size / 4)."),
    epochs: int = typer.Option(30, "--epochs"), max_steps: int | None = typer.Option(None, "--max-steps"),
    pretrain_steps: int = typer.Option(0, "--pretrain-steps", help="Pixel-loss warm-up steps."),
    batch_size: int = typer.Option(16, "--batch-size"), lr: float = typer.Option(2e-4, "--lr"),
    perceptual: str = typer.Option("vgg", "--perceptual", help="vgg (needs the VGG19 download) "
                                   "or features (discriminator feature matching)."),
    adv_weight: float = typer.Option(1e-3, "--adv-weight"),
    pixel_weight: float = typer.Option(0.0, "--pixel-weight", help="L1 term in the GAN phase."),
    channels: int = typer.Option(64, "--channels"), blocks: int = typer.Option(16, "--blocks"),
    head_kernel: int = typer.Option(9, "--head-kernel"), tail_kernel: int = typer.Option(9, "--tail-kernel"),
    global_skip: bool = typer.Option(False, "--global-skip/--no-global-skip", help="Predict detail on "
                                     "top of a bicubic upscale (converges far faster)."),
    upsampler: str = typer.Option("stages", "--upsampler", help="stages (SRGAN's) or lowres "
                                  "(ESPCN-style tail on the input grid: the fast model)."),
    lr_kernel: str = typer.Option("area", "--lr-kernel", help="How LR inputs are made from HR crops: area "
                                  "(the evaluation protocol's), bicubic (the SR papers'), or mixed "
                                  "(each sample one or the other)."),
    pairs: bool = typer.Option(False, "--pairs", help="--data (and --val) hold lr/ and target/ "
                               "images: train to map each input to its target (distillation)."),
    init: str | None = typer.Option(None, "--init", help="Start from these SR weights (same design)."),
    disc_width: int = typer.Option(64, "--disc-width"),
    val_every: int | None = typer.Option(None, "--val-every"), seed: int = typer.Option(0, "--seed"),
    holdout_seed: int = _HOLDOUT_SEED,
    checkpoint_every: int = typer.Option(500, "--checkpoint-every", help="Steps between last.pt saves."),
    device: str = typer.Option("auto", "--device"), amp: bool = typer.Option(True, "--amp/--no-amp"),
    workers: int = typer.Option(0, "--workers"), threads: int | None = typer.Option(None, "--threads"),
    resume: bool = typer.Option(False, "--resume"),
) -> None:
    """Train the super-resolution model (SRGAN).

    The recipe of Ledig et al. 2017: a pixel-loss warm-up, then GAN steps.
    Example: [bold]colorsr train sr --data ./photos --pretrain-steps 2000[/]"""
    from colorsr_cli.train.sr import SRRecipe, train_sr

    recipe = SRRecipe(data=str(data), out=str(out_dir), val=str(val) if val else None, hr_size=hr_size,
                      epochs=epochs, max_steps=max_steps, pretrain_steps=pretrain_steps,
                      batch_size=batch_size, lr=lr, perceptual=perceptual, adv_weight=adv_weight,
                      pixel_weight=pixel_weight, channels=channels, blocks=blocks, head_kernel=head_kernel,
                      tail_kernel=tail_kernel, global_skip=global_skip, upsampler=upsampler,
                      lr_kernel=lr_kernel, pairs=pairs, init=init, disc_width=disc_width,
                      val_every=val_every, seed=seed, holdout_seed=holdout_seed,
                      checkpoint_every=checkpoint_every, device=device, amp=amp, workers=workers,
                      threads=threads)
    run = _run(train_sr, recipe, resume)
    if os.environ.get("RANK", "0") == "0":
        out.print(f"best model: {run / 'best.pt'}  (export with: colorsr export {run})", highlight=False)


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
