"""Restoring many files: decode ahead on a thread, restore in batches, encode behind on a
thread, report one result per file. Bounded queues keep memory flat on any folder size; a
bad file becomes a failed result and the run goes on; outputs are written atomically, and an
interrupted run leaves only complete outputs (a rerun skips them and does the rest)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from colorsr_cli.errors import ColorsrError
from colorsr_cli.io import DecodedImage, ImageJob, output_path_for, read_image, write_image_atomic
from colorsr_cli.pipeline import Restorer, resize, to_image, to_tensor

Status = Literal["done", "skipped", "failed"]


@dataclass
class FileResult:
    source: Path
    output: Path | None
    status: Status
    reason: str = ""
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class OutputPlan:
    out_dir: Path | None = None
    suffix: str = ""
    ext: str | None = None
    overwrite: bool = False


def plan_outputs(jobs: list[ImageJob], plan: OutputPlan) -> Iterator[tuple[ImageJob, Path | FileResult]]:
    """Each job with its output path, or with a final result (skipped: output exists; failed:
    output would overwrite an input or collide with another job's output)."""
    sources = {job.source.resolve() for job in jobs}
    claimed: dict[Path, Path] = {}
    for job in jobs:
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
            yield job, out


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
class _Decoded:
    job: ImageJob
    out: Path
    image: DecodedImage | None = None
    error: str = ""


_DONE = object()
_POLL_SECONDS = 0.1  # how soon the threads notice a cancelled run


def restore_files(jobs: list[ImageJob], restorer: Restorer, plan: OutputPlan,
                  on_result: Callable[[FileResult], None], max_pixels: int = 100_000_000,
                  prefetch: int = 8) -> list[FileResult]:
    """Restore every job; returns (and reports through on_result, always on the calling
    thread) one FileResult per job.

    If anything interrupts the run (Ctrl-C, or an exception from on_result), the file being
    written is finished, queued ones are dropped and the exception propagates: every output on
    disk is then complete, and no thread of this run is left writing."""
    results: list[FileResult] = []

    def report(result: FileResult) -> None:
        results.append(result)
        on_result(result)

    todo = []
    for job, target in plan_outputs(jobs, plan):
        if isinstance(target, FileResult):
            report(target)
        else:
            todo.append((job, target))

    decoded: queue.Queue = queue.Queue(maxsize=prefetch)
    encoded: queue.Queue = queue.Queue(maxsize=prefetch)
    written: queue.SimpleQueue[FileResult] = queue.SimpleQueue()
    cancel, writer_done = threading.Event(), threading.Event()
    reader = threading.Thread(target=_read_all, args=(todo, max_pixels, decoded, cancel),
                              name="colorsr-reader", daemon=True)
    # Not a daemon: should the process exit mid-write (a second Ctrl-C), Python waits for that
    # one file, so its temp file is renamed or removed instead of being left behind.
    writer = threading.Thread(target=_write_all, args=(encoded, written, cancel, writer_done),
                              name="colorsr-writer")
    reader.start()
    writer.start()
    # Waiting on an Event, not writer.join(): on Python < 3.12 a Ctrl-C during join() marks the
    # still running thread as finished, and the interpreter then exits without waiting for it.
    try:
        for batch in _batches(decoded, restorer, report):
            for item, result in _restore_batch(restorer, batch):
                encoded.put((item, result))
            _report_all(written, report)
        encoded.put(_DONE)
        writer_done.wait()
    except BaseException:
        cancel.set()
        writer_done.wait()
        raise
    _report_all(written, report)
    return results


def _read_all(todo: list, max_pixels: int, out: queue.Queue, cancel: threading.Event) -> None:
    for job, target in todo:
        item = _Decoded(job, target)
        try:
            item.image = read_image(job.source, max_pixels)
        except ColorsrError as exc:
            item.error = str(exc)
        except Exception as exc:  # noqa: BLE001 - a decoder bug must not end the run
            item.error = f"{job.source}: unexpected error while reading: {exc!r}"
        if not _put_unless_cancelled(out, item, cancel):
            return
    _put_unless_cancelled(out, _DONE, cancel)


def _put_unless_cancelled(out: queue.Queue, entry: object, cancel: threading.Event) -> bool:
    """out.put(entry), giving up (False) once the run is cancelled and nobody will take it."""
    while not cancel.is_set():
        try:
            out.put(entry, timeout=_POLL_SECONDS)
            return True
        except queue.Full:
            continue
    return False


def _report_all(written: queue.SimpleQueue, report: Callable[[FileResult], None]) -> None:
    """Report the writer's results so far (on the calling thread, see restore_files)."""
    while True:
        try:
            report(written.get_nowait())
        except queue.Empty:
            return


def _batches(decoded: queue.Queue, restorer: Restorer, report) -> Iterator[list[_Decoded]]:
    """Group decoded images: up to batch_size images, or fewer once their pixels would fill a
    batch of tiles, so one huge image never waits for others."""
    opts = restorer.options
    budget = max(1, opts.batch_size) * max(opts.tile, 64) ** 2
    batch: list[_Decoded] = []
    pixels = 0
    while (item := decoded.get()) is not _DONE:
        if item.error:
            report(FileResult(item.job.source, None, "failed", item.error))
            continue
        batch.append(item)
        pixels += item.image.rgb.shape[0] * item.image.rgb.shape[1]
        if len(batch) >= opts.batch_size or pixels >= budget:
            yield batch
            batch, pixels = [], 0
    if batch:
        yield batch


def _restore_batch(restorer: Restorer, batch: list[_Decoded]):
    """Yield (item, output RGB | error string). If the batch fails (e.g. out of memory), each
    image is retried alone so one bad image does not take the others with it."""
    try:
        outputs = restorer.restore([to_tensor(item.image.rgb) for item in batch])
        yield from zip(batch, outputs)
        return
    except (RuntimeError, ValueError) as exc:
        if len(batch) == 1:
            yield batch[0], f"{batch[0].job.source}: restore failed: {str(exc).splitlines()[0]}"
            return
    for item in batch:
        yield from _restore_batch(restorer, [item])


def _write_all(encoded: queue.Queue, written: queue.SimpleQueue, cancel: threading.Event,
               done: threading.Event) -> None:
    """Write restored images until _DONE; once cancelled, stop after the file in hand."""
    try:
        while not cancel.is_set():
            try:
                entry = encoded.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                continue
            if entry is _DONE:
                return
            written.put(_write_one(*entry))
    finally:
        done.set()


def _write_one(item: _Decoded, result: torch.Tensor | str) -> FileResult:
    """Write one restored image (or pass its restore error on) and say how it went."""
    source, notes = item.job.source, item.image.notes
    if isinstance(result, str):
        return FileResult(source, None, "failed", result, notes)
    try:
        alpha = _resize_alpha(item.image.alpha, result.shape[-2:])
        write_image_atomic(item.out, to_image(result), alpha)
    except ColorsrError as exc:
        return FileResult(source, None, "failed", str(exc), notes)
    except Exception as exc:  # noqa: BLE001 - an encoder bug fails this file, not the run
        reason = f"{item.out}: unexpected error while writing: {exc!r}"
        return FileResult(source, None, "failed", reason, notes)
    return FileResult(source, item.out, "done", "", notes)


def _resize_alpha(alpha: np.ndarray | None, size: tuple[int, int]) -> np.ndarray | None:
    """The input's alpha channel brought to the output size (carried through unchanged)."""
    if alpha is None:
        return None
    t = torch.from_numpy(np.ascontiguousarray(alpha, dtype=np.float32))[None]
    if tuple(t.shape[-2:]) != tuple(size):
        t = resize(t, tuple(size), "bilinear")
    return t[0].clamp(0, 1).numpy()
