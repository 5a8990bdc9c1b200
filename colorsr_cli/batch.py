"""Restoring many files: decode ahead on a thread, restore in batches, encode behind on a
thread, report one result per file. Bounded queues keep memory flat on any folder size; a
bad file becomes a failed result and the run goes on; outputs are written atomically, and an
interrupted run leaves only complete outputs (a rerun skips them and does the rest).

Batches never wait for work: a batch is the next decoded image plus whatever small images are
already decoded, so each output is written as soon as its batch is done, and Ctrl-C still
writes every image that was finished before it."""

from __future__ import annotations

import queue
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from colorsr_cli import __version__
from colorsr_cli.distributed import Shard, take_shard
from colorsr_cli.errors import ColorsrError
from colorsr_cli.io import (
    PNG_LEVEL,
    ImageJob,
    ImageMetadata,
    find_images,
    made_by_colorsr,
    output_folder_problem,
    output_path_for,
    read_image,
    write_image_atomic,
)
from colorsr_cli.pipeline import Restorer, resize, to_image, to_tensor
from colorsr_cli.stream import END, ReadAhead, WriteBehind

DEFAULT_SUFFIX = "_colorsr"  # what outputs written next to their inputs are called
SOFTWARE = f"colorsr {__version__}"  # the marker in every output's metadata (io.made_by_colorsr)

Status = Literal["done", "skipped", "failed"]


@dataclass
class FileResult:
    source: Path
    output: Path | None
    status: Status
    reason: str = ""
    notes: list[str] = field(default_factory=list)
    kept_colour: bool = False  # a colour photo that was only upscaled, not colourised


@dataclass(frozen=True)
class OutputPlan:
    out_dir: Path | None = None
    suffix: str = ""
    ext: str | None = None
    overwrite: bool = False
    png_level: int = PNG_LEVEL

    @classmethod
    def choose(cls, out_dir: Path | None, suffix: str | None, ext: str | None = None,
               overwrite: bool = False, png_level: int = PNG_LEVEL) -> OutputPlan:
        """The plan with restore's default suffix: none in an --out folder, DEFAULT_SUFFIX for
        outputs next to their inputs."""
        if suffix is None:
            suffix = "" if out_dir is not None else DEFAULT_SUFFIX
        return cls(out_dir, suffix, ext, overwrite, png_level)


OWN_OUTPUT = "an output of colorsr (its name or metadata says so): not restored again"


def own_outputs(jobs: list[ImageJob], suffix: str) -> set[Path]:
    """The sources among jobs that are this tool's outputs: their metadata carries our marker,
    or their name is another job's name plus the output suffix ('x_colorsr.png' next to 'x.jpg')."""
    stems = {(job.source.parent, job.source.stem) for job in jobs}
    suffixes = {suffix, DEFAULT_SUFFIX} - {""}

    def named_like_an_output(source: Path) -> bool:
        return any(source.stem.endswith(s) and (source.parent, source.stem[:-len(s)]) in stems
                   for s in suffixes)

    return {job.source for job in jobs if named_like_an_output(job.source) or made_by_colorsr(job.source)}


def plan_outputs(jobs: list[ImageJob], plan: OutputPlan) -> Iterator[tuple[ImageJob, Path | FileResult]]:
    """Each job with its output path, or with a final result (skipped: output exists, or the
    input is one of our outputs; failed: output would overwrite an input, collide with another
    job's output, or its folder cannot be written)."""
    ours = own_outputs(jobs, plan.suffix)
    sources = {job.source.resolve() for job in jobs if job.source not in ours}
    claimed: dict[Path, Path] = {}
    folders: dict[Path, str | None] = {}
    for job in jobs:
        if job.source in ours:
            yield job, FileResult(job.source, None, "skipped", OWN_OUTPUT)
            continue
        try:
            out = output_path_for(job, plan.out_dir, plan.suffix, plan.ext)
        except ColorsrError as exc:
            yield job, FileResult(job.source, None, "failed", str(exc))
            continue
        key = out.resolve()
        if key in sources:
            yield job, FileResult(job.source, out, "failed", f"{out}: output would overwrite an input")
        elif key in claimed:
            yield job, FileResult(job.source, out, "failed",
                                  f"{out}: same output as {claimed[key]} (use --ext or --suffix)")
        elif out.exists() and not plan.overwrite:
            claimed[key] = job.source
            yield job, FileResult(job.source, out, "skipped", "output exists (use --overwrite)")
        else:
            claimed[key] = job.source
            if out.parent not in folders:
                folders[out.parent] = output_folder_problem(out.parent)
            problem = folders[out.parent]
            yield job, out if problem is None else FileResult(job.source, out, "failed", f"{out}: {problem}")


def claim_outputs(jobs: list[ImageJob], plan: OutputPlan) -> tuple[list[ImageJob], list[FileResult]]:
    """(jobs that may go ahead, failures): the refusals of plan_outputs (output would overwrite
    an input, or is claimed by an earlier job) decided over the whole job list. Under torchrun
    every rank computes this on all inputs before it takes its share, so two ranks never write
    the same file (each rank alone would only see the collisions inside its own share)."""
    kept, refused = [], []
    for job, target in plan_outputs(jobs, plan):
        if isinstance(target, FileResult) and target.status == "failed":
            refused.append(target)
        else:
            kept.append(job)
    return kept, refused


@dataclass
class RestoreWork:
    """What a restore run is to do, decided before any model is loaded: this process's jobs
    each with its output path or final result (plan_outputs), the jobs refused across all
    ranks (claim_outputs; refused on every rank, reported once), and the paths that named no
    image (find_images' problems)."""

    planned: list[tuple[ImageJob, Path | FileResult]]
    refused: list[FileResult] = field(default_factory=list)
    problems: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def pending(self) -> int:
        """How many planned jobs are work to do."""
        return pending(self.planned)

    def settled(self) -> list[FileResult]:
        """The planned jobs' results known without restoring (skipped or refused outputs)."""
        return [target for _, target in self.planned if isinstance(target, FileResult)]


def plan_restore(paths: list[str], plan: OutputPlan, shard: Shard = Shard()) -> RestoreWork:
    """Find the images that paths name and plan their outputs: an --out folder inside the input
    tree is never read as input, outputs are claimed over every rank's inputs, then this rank
    takes its share (distributed.take_shard) and plans it."""
    jobs, problems = find_images(paths)
    if plan.out_dir is not None:  # an --out inside the input tree: never restore our own outputs
        jobs = [job for job in jobs if not job.source.resolve().is_relative_to(plan.out_dir.resolve())]
    refused: list[FileResult] = []
    if shard.world > 1:  # collisions across ranks are decided before the inputs are shared out
        jobs, refused = claim_outputs(jobs, plan)
    return RestoreWork(list(plan_outputs(take_shard(jobs, shard), plan)), refused, problems)


@dataclass
class _Decoded:
    """One input on its way through: what the output needs of the decoded file. The decoded
    (H, W, 3) array itself is dropped once it is a (3, H, W) tensor: for a large scan it is a
    second copy of the pixels."""

    job: ImageJob
    out: Path
    tensor: torch.Tensor | None = None  # the decoded RGB, (3, H, W) float32 in [0, 1]
    alpha: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)
    metadata: ImageMetadata = field(default_factory=ImageMetadata)
    colourise: bool = True  # Restorer.colourises(tensor), decided on the reading thread
    kept_colour: bool = False  # not colourised although a colouriser runs: a colour photo
    error: str = ""


def restore_files(jobs: list[ImageJob], restorer: Restorer, plan: OutputPlan,
                  on_result: Callable[[FileResult], None], max_pixels: int = 100_000_000,
                  prefetch: int = 8) -> list[FileResult]:
    """Plan (plan_outputs) and restore every job: restore_planned on plan_outputs' answer."""
    return restore_planned(list(plan_outputs(jobs, plan)), restorer, plan, on_result, max_pixels, prefetch)


def pending(planned: list[tuple[ImageJob, Path | FileResult]]) -> int:
    """How many of plan_outputs' answers are work to do (not already a final result)."""
    return sum(not isinstance(target, FileResult) for _, target in planned)


def restore_planned(planned: list[tuple[ImageJob, Path | FileResult]], restorer: Restorer,
                    plan: OutputPlan, on_result: Callable[[FileResult], None],
                    max_pixels: int = 100_000_000, prefetch: int = 8) -> list[FileResult]:
    """Restore every planned job; returns (and reports through on_result, always on the calling
    thread) one FileResult per job.

    If anything interrupts the run (Ctrl-C, or an exception from on_result), every image
    already restored is still written (a second interrupt: only the file being written),
    queued inputs are dropped and the exception propagates: every output on disk is then
    complete, and no thread of this run is left writing."""
    results: list[FileResult] = []

    def report(result: FileResult) -> None:
        results.append(result)
        on_result(result)

    todo = []
    for job, target in planned:
        if isinstance(target, FileResult):
            report(target)
        else:
            todo.append((job, target))

    decoded = ReadAhead(_decode_all(todo, restorer, max_pixels), prefetch, "colorsr-reader")
    # Restored images wait for the writer; few, as each may be a large full-size image.
    writer = WriteBehind(lambda entry: _write_one(*entry, plan), 2, "colorsr-writer")
    try:
        for batch in _batches(decoded, restorer, report):
            for item, result in _restore_batch(restorer, batch):
                writer.put((item, result))
            _report_all(writer, report)
        writer.finish()
    except BaseException:
        decoded.stop()  # the reader stops; the writer writes what is restored, then stops
        try:
            writer.finish()
        except BaseException:  # a second interrupt: only the file in hand is finished
            writer.abort()
            raise
        _report_all(writer, report)
        raise
    _report_all(writer, report)
    return results


def _decode_all(todo: list, restorer: Restorer, max_pixels: int) -> Iterator[_Decoded]:
    """Each planned job decoded (or with the reason it could not be), on the reader thread."""
    for job, target in todo:
        item = _Decoded(job, target)
        try:
            decoded = read_image(job.source, max_pixels)
            item.tensor, item.alpha = to_tensor(decoded.rgb), decoded.alpha
            item.notes, item.metadata = decoded.notes, decoded.metadata
            del decoded
            item.colourise = restorer.colourises(item.tensor)
            item.kept_colour = restorer.colorizer is not None and not item.colourise
        except ColorsrError as exc:
            item.error = str(exc)
        except MemoryError:
            item.error = (f"{job.source}: out of memory decoding it (--max-pixels skips images this "
                          "large)")
        except Exception as exc:  # noqa: BLE001 - a decoder bug must not end the run
            item.error = f"{job.source}: unexpected error while reading: {exc!r}"
        yield item


def _report_all(writer: WriteBehind, report: Callable[[FileResult], None]) -> None:
    """Report the writer's results so far (on the calling thread, see restore_planned)."""
    for result in writer.results():
        report(result)


def _batches(decoded: ReadAhead, restorer: Restorer, report) -> Iterator[list[_Decoded]]:
    """Group decoded images without waiting for any: the next image, plus the small ones (each
    within one SR tile) already decoded behind it, up to batch_size images or a batch of tiles'
    worth of pixels. An image that needs several tiles goes alone (its tiles batch together)."""
    opts = restorer.options
    tile = max(opts.tile, 64)
    budget = max(1, opts.batch_size) * tile ** 2
    pending: list[_Decoded] = []  # decoded, not yet batched
    finished = False
    while pending or not finished:
        if not pending:
            item = decoded.get()
            if item is END:
                return
            pending.append(item)
        while not finished and len(pending) < opts.batch_size:  # take what is ready, no waiting
            try:
                item = decoded.get(block=False)
            except queue.Empty:
                break
            if item is END:
                finished = True
            else:
                pending.append(item)
        batch, pixels = [], 0
        while pending:
            item = pending[0]
            if item.error:
                report(FileResult(item.job.source, None, "failed", item.error))
                pending.pop(0)
                continue
            h, w = item.tensor.shape[-2:]
            small = opts.tile <= 0 or max(h, w) <= opts.tile
            if batch and (not small or len(batch) >= opts.batch_size or pixels + h * w > budget):
                break
            batch.append(pending.pop(0))
            pixels += h * w
            if not small:
                break
        if batch:
            yield batch


def _restore_batch(restorer: Restorer, batch: list[_Decoded]):
    """Yield (item, output RGB | error string). If the batch fails (e.g. out of memory), each
    image is retried alone so one bad image does not take the others with it."""
    try:
        outputs = restorer.restore([item.tensor for item in batch], [item.colourise for item in batch])
        yield from zip(batch, outputs)
        return
    except (RuntimeError, ValueError, MemoryError) as exc:
        if len(batch) == 1:
            yield batch[0], _restore_failure(batch[0], exc, restorer)
            return
    for item in batch:
        yield from _restore_batch(restorer, [item])


def _restore_failure(item: _Decoded, exc: BaseException, restorer: Restorer) -> str:
    """One line for a failed restore; for an allocation failure, the options that need less."""
    h, w = item.tensor.shape[-2:]
    message = str(exc)
    if isinstance(exc, (MemoryError, torch.OutOfMemoryError)) or "can't allocate memory" in message:
        opts = restorer.options
        tile = restorer.tiling_for(h, w)[0]  # as restored: a memory budget may have lowered it
        smaller = [f"--tile {max(16, tile // 2)}" if tile else "--tile 256"]
        if opts.scale > 1:
            smaller.append(f"--scale {opts.scale // 2}")
        return (f"{item.job.source}: out of memory restoring {w}x{h} at scale {opts.scale} "
                f"(try {' or '.join(smaller)})")
    return f"{item.job.source}: restore failed: {message.splitlines()[0] if message else type(exc).__name__}"


def _write_one(item: _Decoded, result: torch.Tensor | str, plan: OutputPlan) -> FileResult:
    """Write one restored image (or pass its restore error on) and say how it went."""
    source, notes = item.job.source, item.notes
    if isinstance(result, str):
        return FileResult(source, None, "failed", result, notes)
    try:
        alpha = _resize_alpha(item.alpha, result.shape[-2:])
        scale = result.shape[-1] / item.tensor.shape[-1]
        write_image_atomic(item.out, to_image(result), alpha,
                           metadata=item.metadata.for_output(scale, SOFTWARE), png_level=plan.png_level)
    except ColorsrError as exc:
        return FileResult(source, None, "failed", str(exc), notes)
    except Exception as exc:  # noqa: BLE001 - an encoder bug fails this file, not the run
        reason = f"{item.out}: unexpected error while writing: {exc!r}"
        return FileResult(source, None, "failed", reason, notes)
    return FileResult(source, item.out, "done", "", notes, kept_colour=item.kept_colour)


def _resize_alpha(alpha: np.ndarray | None, size: tuple[int, int]) -> np.ndarray | None:
    """The input's alpha channel brought to the output size (carried through unchanged)."""
    if alpha is None:
        return None
    t = torch.from_numpy(np.ascontiguousarray(alpha, dtype=np.float32))[None]
    if tuple(t.shape[-2:]) != tuple(size):
        t = resize(t, tuple(size), "bilinear")
    return t[0].clamp(0, 1).numpy()
