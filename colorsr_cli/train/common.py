"""Pieces both recipes share: photo folders, deterministic epoch order (also under DDP),
run folders with JSONL metrics, checkpoints, and the distributed setup."""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from colorsr_cli.distributed import Shard as Dist
from colorsr_cli.distributed import current_shard
from colorsr_cli.errors import DataError, ImageReadError
from colorsr_cli.io import find_images, read_image
from colorsr_cli.weightfile import atomic_torch_save, safe_torch_load

# Callbacks: the library reports progress, the CLI decides how to show it.
StepCallback = Callable[[int, int, dict[str, float]], None]
EventCallback = Callable[[str], None]


def _ignore_step(step: int, total: int, metrics: dict[str, float]) -> None:
    pass


def _ignore_event(message: str) -> None:
    pass


@dataclass
class Reporter:
    on_step: StepCallback = _ignore_step
    on_event: EventCallback = _ignore_event


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


def split_holdout(n: int, fraction: float, seed: int, lo: int = 16, hi: int = 1000
                  ) -> tuple[list[int], list[int]]:
    """Deterministic (train, val) index split of range(n) for runs without --val; seed is the
    run's holdout_seed (holdout_seed_of)."""
    k = min(hi, max(lo, int(n * fraction)), n // 2)
    perm = np.random.default_rng(seed).permutation(n)
    return sorted(perm[k:].tolist()), sorted(perm[:k].tolist())


def split_photos(photos: PhotoFolder, fraction: float, seed: int, min_side: int = 0,
                 reporter: Reporter | None = None) -> tuple[list[int], list[int]]:
    """The (train, val) indices of a run without --val: split_holdout over the photos whose
    shorter side is at least min_side (PhotoFolder.indices_with_min_side), the rest training.
    The reporter is told when too few photos are that large and all of them are eligible."""
    eligible = photos.indices_with_min_side(min_side)
    if min_side and len(eligible) == len(photos) and reporter is not None:
        reporter.on_event(f"note: fewer than 32 photos have a shorter side of {min_side} px or "
                          f"more: the hold-out is drawn from all photos")
    held = {eligible[i] for i in split_holdout(len(eligible), fraction, seed)[1]}
    return [i for i in range(len(photos)) if i not in held], sorted(held)


def split_summary(data: str, found: int, train: int, val: int, val_folder: str | None = None) -> str:
    """One line on what a trainer found: how many photos, how many train, how many validate and
    where those come from (held out of data, or a --val folder)."""
    source = f"from {val_folder}" if val_folder else "held out for validation"
    return f"{found} photos found in {data}: {train} for training, {val} {source}"


def holdout_seed_of(recipe: dict[str, Any]) -> int:
    """The seed of a run's hold-out split, from its recipe.json. Runs begun before --holdout-seed
    existed split with their --seed."""
    return int(recipe.get("holdout_seed", recipe.get("seed", 0)))


def keep_holdout(recipe: Any, run_folder: Path) -> Any:
    """The recipe of a resumed run with the hold-out its recipe.json split with, so that a run
    begun before --holdout-seed existed (split by its --seed) validates on the same photos."""
    try:
        old = json.loads((run_folder / "recipe.json").read_text())
    except (OSError, ValueError):
        return recipe
    return replace(recipe, holdout_seed=holdout_seed_of(old))


class RunView(Dataset):
    """The samples of steps [first_step, total_steps) for this rank, epoch after epoch, as one
    dataset, so that one DataLoader (one set of worker processes) serves the whole run; a loader
    per epoch would restart its workers every epoch, a pause every few seconds on a GPU.

    Epoch e visits the training images in DistributedSampler's order for e (its first
    steps_per_epoch * batch_size of them), and item (e, i) is sample_fn(i, rng) with an RNG
    derived from (seed, e, i): augmentation is the same whatever the worker count, and a resumed
    run sees exactly the batches it would have seen."""

    def __init__(self, train_idx: list[int], sample_fn: Callable, seed: int, batch_size: int,
                 steps_per_epoch: int, first_step: int, total_steps: int, ddp: Dist):
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


def setup_distributed(device: torch.device) -> Dist:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); else one process."""
    shard = current_shard()
    if shard.world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return shard


@dataclass
class RunLog:
    """A run folder: recipe.json, metrics.jsonl, checkpoints, sample grids."""

    folder: Path
    enabled: bool = True
    started: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        if self.enabled:
            self.folder.mkdir(parents=True, exist_ok=True)

    def write_recipe(self, recipe: Any, name: str = "recipe.json") -> None:
        self.write_json(name, asdict(recipe))

    def write_json(self, name: str, record: Any) -> None:
        if self.enabled:
            tmp = self.folder / f".{name}.tmp"
            tmp.write_text(json.dumps(record, indent=2, default=str))
            os.replace(tmp, self.folder / name)

    def record_resume(self, recipe: Any, step: int) -> dict[str, list]:
        """A resumed run whose options differ from recipe.json (a longer run, a lower lr) keeps
        recipe.json as first written and records what changed: the full new recipe as
        recipe.resume-stepNNNNNNN.json and {option: [old, new]} in metrics.jsonl. Returns the
        changes (empty when the options are the same)."""
        if not self.enabled:
            return {}
        new = json.loads(json.dumps(asdict(recipe), default=str))
        try:
            old = json.loads((self.folder / "recipe.json").read_text())
        except (OSError, ValueError):
            old = {}
        # An option added after the run began is absent from its recipe.json: it had the default,
        # except the hold-out seed, which was --seed then (keep_holdout).
        if old and "holdout_seed" not in old:
            old["holdout_seed"] = holdout_seed_of(old)
        defaults = {f.name: f.default for f in fields(recipe) if f.default is not MISSING}
        changed = {k: [old.get(k, defaults.get(k)), v] for k, v in new.items()
                   if old.get(k, defaults.get(k)) != v}
        if changed:
            self.write_recipe(recipe, f"recipe.resume-step{step:07d}.json")
        self.log({"step": step, "event": "resumed", "changed": changed})
        return changed

    def log(self, record: dict[str, Any]) -> None:
        if self.enabled:
            with open(self.folder / "metrics.jsonl", "a") as f:
                f.write(json.dumps({"time": round(time.time() - self.started, 2)} | record) + "\n")


def save_checkpoint(path: Path, **state: Any) -> None:
    atomic_torch_save(state, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise DataError(f"{path}: no checkpoint to resume from")
    return safe_torch_load(path)


def resume_training_state(path: Path, lr: float, val_view: dict | None = None,
                          reporter: Reporter | None = None, **parts: Any) -> tuple[int, float]:
    """Load the named models / optimizers (G, D, opt_g, opt_d) from a checkpoint; returns
    (step, best_val). The recipe's learning rate replaces the one saved in the optimizers, so
    a resumed run can be a low-lr fine-tune; with an unchanged recipe nothing differs.
    val_view describes how the validation photos are shown (saved as the checkpoint's
    "val_view", absent = {}); when it differs from the checkpoint's, the saved best validation
    score measured something else and is dropped (best_val = inf, and the reporter is told)."""
    ckpt = load_checkpoint(path)
    for key, obj in parts.items():
        obj.load_state_dict(ckpt[key])
        for group in getattr(obj, "param_groups", []):
            group["lr"] = lr
    best_val = float(ckpt["best_val"])
    if val_view is not None and ckpt.get("val_view", {}) != val_view:
        best_val = float("inf")
        if reporter is not None:
            reporter.on_event("validation inputs are made differently from the checkpoint's run: "
                              "its best validation L1 is not comparable and is dropped")
    return int(ckpt["step"]), best_val


def planned_steps(epochs: int, steps_per_epoch: int, max_steps: int | None, reporter: Reporter) -> int:
    """The run's length: epochs x steps_per_epoch, or max_steps if fewer. When the epochs end the
    run first, says so (a --max-steps that is never reached is otherwise a silent surprise)."""
    total = epochs * steps_per_epoch
    if max_steps is not None and max_steps > total:
        reporter.on_event(f"note: {epochs} epochs of {steps_per_epoch} steps end the run at step "
                          f"{total}, before --max-steps {max_steps} (raise --epochs to reach it)")
    return total if max_steps is None else min(total, max_steps)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


def area_resize(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Area-filter resize of (H, W, C) float32 to size=(height, width)."""
    import cv2

    return cv2.resize(img, (size[1], size[0]), interpolation=cv2.INTER_AREA)


def random_flip(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return img[:, ::-1] if rng.random() < 0.5 else img


def to_chw(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32))


def make_grid(rows: list[list[torch.Tensor]]) -> np.ndarray:
    """Rows of (3, H, W) images in [0, 1] (same height per row) -> (H_total, W_total, 3)."""
    lines = [torch.cat(row, dim=2) for row in rows]
    width = max(line.shape[2] for line in lines)
    lines = [torch.nn.functional.pad(line, (0, width - line.shape[2])) for line in lines]
    return torch.cat(lines, dim=1).permute(1, 2, 0).clamp(0, 1).cpu().numpy()


@dataclass
class Schedule:
    """What the shared loop needs to know about a recipe."""

    out: Path
    seed: int
    batch_size: int
    total_steps: int
    steps_per_epoch: int
    val_every: int
    checkpoint_every: int
    log_every: int
    workers: int
    pin_memory: bool = False  # page-locked batches, so a CUDA copy overlaps the step
    # What validate_fn's score is (lower is better), for the log and the progress messages.
    score_name: str = "val_l1"
    score_label: str = "validation L1"


def run_loop(schedule: Schedule, ddp: Dist, run: RunLog, reporter: Reporter,
             train_idx: list[int], sample_fn: Callable, step_fn: Callable[[Any, int], dict],
             validate_fn: Callable[[int], float], save_best_fn: Callable[[int, float], None],
             state_fn: Callable[[], dict], start_step: int, best_val: float) -> None:
    """data -> step -> log -> validate/checkpoint, until total_steps. A resumed run starts at
    start_step in the middle of its epoch and sees exactly the batches it would have seen."""
    step, tic, seen = start_step, time.time(), 0

    def checkpoint() -> None:
        if ddp.main:
            save_checkpoint(schedule.out / "last.pt", step=step, best_val=best_val, **state_fn())

    view = RunView(train_idx, sample_fn, schedule.seed, schedule.batch_size, schedule.steps_per_epoch,
                   start_step, schedule.total_steps, ddp)
    loader = DataLoader(view, batch_size=schedule.batch_size, shuffle=False,
                        num_workers=schedule.workers, pin_memory=schedule.pin_memory)
    for batch in loader:
        epoch = step // schedule.steps_per_epoch
        losses = step_fn(batch, step)
        step += 1
        seen += schedule.batch_size * ddp.world
        if step % schedule.log_every == 0 or step == schedule.total_steps:
            # Step functions return detached loss tensors, read here only: a .item() per
            # loss per step would make the host wait for the GPU every step.
            losses = {k: float(v) for k, v in losses.items()}
            rate = seen / max(time.time() - tic, 1e-9)
            run.log({"step": step, "epoch": epoch} | losses | {"img_per_s": round(rate, 2)})
            reporter.on_step(step, schedule.total_steps, losses | {"img/s": rate})
        if step % schedule.val_every == 0 or step == schedule.total_steps:
            val = validate_fn(step)
            if val < best_val:
                best_val = val
                if ddp.main:
                    save_best_fn(step, val)
            name, label = schedule.score_name, schedule.score_label
            run.log({"step": step, "epoch": epoch, name: val, f"best_{name}": best_val})
            reporter.on_event(f"step {step}: {label} {val:.4f} (best {best_val:.4f})")
            checkpoint()
        elif step % schedule.checkpoint_every == 0:
            checkpoint()
    checkpoint()


def generator_pixel_step(G, opt_g, x: torch.Tensor, target: torch.Tensor, amp: bool,
                         loss_fn: Callable = F.l1_loss) -> torch.Tensor:
    """One generator update on a pixel loss (default L1) of G(x) and target alone (the SR
    warm-up); returns the loss (a detached tensor: see run_loop)."""
    with torch.autocast(x.device.type, torch.bfloat16, enabled=amp):
        loss = loss_fn(G(x).float(), target)
    opt_g.zero_grad(set_to_none=True)
    loss.backward()
    opt_g.step()
    return loss.detach()


def critic_backward(D: torch.nn.Module, x: torch.Tensor, target: float, loss_fn: Callable,
                    amp: bool, first: bool) -> torch.Tensor:
    """loss_fn(D(x), target) back-propagated into D at once; returns the (detached) loss.

    Real and fake batches go through D in separate passes, as in pix2pix and SRGAN: with
    BatchNorm, a mixed batch would let D judge images by batch statistics that the
    generator's own (fake-only) pass never has. Under DDP the first of the two calls skips
    the gradient all-reduce (no_sync) and the second reduces both."""
    sync = D.no_sync() if first and hasattr(D, "no_sync") else contextlib.nullcontext()
    with sync, torch.autocast(x.device.type, torch.bfloat16, enabled=amp):
        out = D(x).float()
        loss = loss_fn(out, torch.full_like(out, target))
        loss.backward()
    return loss.detach()


def use_mixed_precision(device: torch.device, wanted: bool) -> bool:
    """Whether a trainer runs its forward passes under bf16 autocast: on CUDA whenever wanted,
    on a CPU only where it computes bf16 natively (there it measured 1.7-1.9x the fp32 step
    rate; elsewhere oneDNN emulates bf16 and it would be slower). Weights, optimiser state and
    validation stay fp32."""
    if not wanted:
        return False
    if device.type == "cuda":
        return True
    if device.type == "cpu":
        from colorsr_cli.devices import cpu_has_native_bf16
        return cpu_has_native_bf16()
    return False
