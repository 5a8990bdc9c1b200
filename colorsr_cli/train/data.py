"""Training photos: folders of images, the hold-out split, the run's epoch order (the same under
DDP and after a resume) and the array helpers the recipes' sample views share."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler

from colorsr_cli.distributed import Shard
from colorsr_cli.errors import DataError, ImageReadError
from colorsr_cli.io import find_images, read_image
from colorsr_cli.train.runlog import Reporter


class PhotoFolder:
    """All images under a folder tree. Files that fail to decode are skipped (with one
    warning each) by substituting the next image, so a bad file never stops training."""

    def __init__(self, root: Path, reporter: Reporter, min_side: int = 0):
        jobs, problems = find_images([str(root)])
        for path, reason in problems:
            reporter.on_event(f"warning: {path}: {reason}")
        paths = [job.source for job in jobs]
        if min_side:
            paths = self._large_enough(paths, min_side, reporter)
        if not paths:
            raise DataError(f"{root}: no usable images found"
                            + (f" (need a shorter side of at least {min_side} px)" if min_side else ""))
        self.paths = paths
        self.reporter = reporter
        self._bad: set[int] = set()
        self._cache: list[np.ndarray | None] | None = None

    @staticmethod
    def _large_enough(paths: list[Path], min_side: int, reporter: Reporter) -> list[Path]:
        from PIL import Image

        kept = []
        for p in paths:
            try:
                with Image.open(p) as im:
                    if min(im.size) >= min_side:
                        kept.append(p)
            except Exception as exc:  # noqa: BLE001 - any unreadable header is a skipped file
                reporter.on_event(f"warning: skipping {p}: {exc}")
        skipped = len(paths) - len(kept)
        if skipped:
            reporter.on_event(f"{skipped} images smaller than {min_side}px (or unreadable) skipped")
        return kept

    def __len__(self) -> int:
        return len(self.paths)

    def indices_with_min_side(self, min_side: int) -> list[int]:
        """Indices of the photos whose shorter side is at least min_side (read from the file
        headers); every index for min_side 0, or when fewer than 32 photos qualify."""
        if min_side <= 0:
            return list(range(len(self.paths)))
        from PIL import Image

        kept = []
        for i, path in enumerate(self.paths):
            try:
                with Image.open(path) as im:
                    if min(im.size) >= min_side:
                        kept.append(i)
            except OSError:
                continue
        return kept if len(kept) >= 32 else list(range(len(self.paths)))

    def load(self, index: int) -> np.ndarray:
        """RGB float32 (H, W, 3) in [0, 1] of image `index` (or the next readable one)."""
        for k in range(len(self.paths)):
            i = (index + k) % len(self.paths)
            if i in self._bad:
                continue
            if self._cache is not None:
                return _unpack(self._cache[i])
            try:
                return read_image(self.paths[i]).rgb
            except ImageReadError as exc:
                self._bad.add(i)
                self.reporter.on_event(f"warning: skipping bad training image: {exc}")
        raise DataError("no training image could be decoded")

    def preload(self, threads: int | None = None) -> int:
        """Decode every photo once and keep it in memory (8-bit photos as uint8, 3 bytes a pixel;
        others as float32), so that load() no longer decodes: for small photos read faster than
        data-loading processes can decode them (Tiny-ImageNet's 64x64 JPEGs on a GPU). Data-loading
        processes started afterwards share the memory (fork). Bad files are skipped as in load().
        Returns the bytes held."""
        from concurrent.futures import ThreadPoolExecutor

        def decode(i: int) -> np.ndarray | None:
            try:
                return _pack(read_image(self.paths[i]).rgb)
            except ImageReadError as exc:
                self.reporter.on_event(f"warning: skipping bad training image: {exc}")
                return None

        with ThreadPoolExecutor(threads or min(16, os.cpu_count() or 1)) as pool:
            cache = list(pool.map(decode, range(len(self.paths))))
        self._bad |= {i for i, img in enumerate(cache) if img is None}
        if len(self._bad) == len(cache):
            raise DataError("no training image could be decoded")
        self._cache = cache
        return sum(img.nbytes for img in cache if img is not None)


def _pack(rgb: np.ndarray) -> np.ndarray:
    """float32 [0, 1] -> uint8 when that is exact (an 8-bit photo), else the float32 as is."""
    packed = np.rint(rgb * 255).astype(np.uint8)
    return packed if np.array_equal(_unpack(packed), rgb) else rgb


def _unpack(img: np.ndarray) -> np.ndarray:
    """What _pack kept -> float32 [0, 1], the values read_image gave."""
    return img.astype(np.float32) / np.float32(255) if img.dtype == np.uint8 else img


class Folder(Protocol):
    """What a recipe's photos offer: a count and load(i), whatever one item holds."""

    def __len__(self) -> int: ...
    def load(self, index: int) -> Any: ...


@dataclass
class TrainingData:
    """The photos a run trains on (train_idx of photos) and validates on (val_idx of
    val_photos: photos themselves when the validation photos are held out of them)."""

    photos: Folder
    val_photos: Folder
    train_idx: list[int]
    val_idx: list[int]


def training_data(photos: Folder, val_photos: Folder | None, fraction: float, holdout_seed: int,
                  limit: int, reporter: Reporter, min_side: int = 0) -> TrainingData:
    """All of photos for training and the first `limit` of val_photos for validation; without
    val_photos, a hold-out of photos (split_photos) for validation and the rest for training."""
    if val_photos is not None:
        return TrainingData(photos, val_photos, list(range(len(photos))),
                            list(range(min(len(val_photos), limit))))
    train_idx, val_idx = split_photos(photos, fraction, holdout_seed, min_side, limit, reporter)
    return TrainingData(photos, photos, train_idx, val_idx)


def split_holdout(n: int, fraction: float, seed: int, lo: int = 16, hi: int = 1000
                  ) -> tuple[list[int], list[int]]:
    """Deterministic (train, val) index split of range(n) for runs without --val; seed is the
    run's holdout_seed."""
    k = min(hi, max(lo, int(n * fraction)), n // 2)
    perm = np.random.default_rng(seed).permutation(n)
    return sorted(perm[k:].tolist()), sorted(perm[:k].tolist())


def split_photos(photos: Folder, fraction: float, seed: int, min_side: int = 0, limit: int = 1000,
                 reporter: Reporter | None = None) -> tuple[list[int], list[int]]:
    """The (train, val) indices of a run without --val: split_holdout (at most `limit` held out)
    over the photos whose shorter side is at least min_side (PhotoFolder.indices_with_min_side),
    the rest training. The reporter is told when too few photos are that large and all of them
    are eligible."""
    eligible = photos.indices_with_min_side(min_side) if min_side else list(range(len(photos)))
    if min_side and len(eligible) == len(photos) and reporter is not None:
        reporter.on_event(f"note: fewer than 32 photos have a shorter side of {min_side} px or "
                          f"more: the hold-out is drawn from all photos")
    held = {eligible[i] for i in split_holdout(len(eligible), fraction, seed, hi=limit)[1]}
    return [i for i in range(len(photos)) if i not in held], sorted(held)


def split_summary(data: str, found: int, train: int, val: int, val_folder: str | None = None) -> str:
    """One line on what a trainer found: how many photos, how many train, how many validate and
    where those come from (held out of data, or a --val folder)."""
    source = f"from {val_folder}" if val_folder else "held out for validation"
    return f"{found} photos found in {data}: {train} for training, {val} {source}"


class RunView(Dataset):
    """The samples of steps [first_step, total_steps) for this rank, epoch after epoch, as one
    dataset, so that one DataLoader (one set of worker processes) serves the whole run; a loader
    per epoch would restart its workers every epoch, a pause every few seconds on a GPU.

    Epoch e visits the training images in DistributedSampler's order for e (its first
    steps_per_epoch * batch_size of them), and item (e, i) is sample_fn(i, rng) with an RNG
    derived from (seed, e, i): augmentation is the same whatever the worker count, and a resumed
    run sees exactly the batches it would have seen."""

    def __init__(self, train_idx: list[int], sample_fn: Callable, seed: int, batch_size: int,
                 steps_per_epoch: int, first_step: int, total_steps: int, ddp: Shard):
        self.train_idx, self.sample_fn, self.seed = train_idx, sample_fn, seed
        self.per_epoch = steps_per_epoch * batch_size
        self.first, self.count = first_step * batch_size, max(0, total_steps - first_step) * batch_size
        self.world, self.rank = ddp.world, ddp.rank
        self._epoch, self._order = -1, []

    def __len__(self) -> int:
        return self.count

    def order(self, epoch: int) -> list[int]:
        """Image indices of `epoch` for this rank, in visiting order."""
        if epoch != self._epoch:
            sampler = DistributedSampler(range(len(self.train_idx)), num_replicas=self.world,
                                         rank=self.rank, shuffle=True, seed=self.seed, drop_last=True)
            sampler.set_epoch(epoch)
            self._epoch, self._order = epoch, [self.train_idx[k] for k in sampler]
        return self._order

    def __getitem__(self, k: int):
        epoch, j = divmod(self.first + k, self.per_epoch)
        i = self.order(epoch)[j]
        return self.sample_fn(i, np.random.default_rng([self.seed, epoch, i]))


def area_resize(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Area-filter resize of (H, W, C) float32 to size=(height, width)."""
    import cv2

    return cv2.resize(img, (size[1], size[0]), interpolation=cv2.INTER_AREA)


def random_flip(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return img[:, ::-1] if rng.random() < 0.5 else img


def to_chw(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32))
