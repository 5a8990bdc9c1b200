"""What a run reports: to its caller through a Reporter (progress and events, shown by the CLI)
and to its run folder (recipe.json, metrics.jsonl, checkpoints, sample grids)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from colorsr_cli.errors import DataError
from colorsr_cli.io import write_image_atomic
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


@dataclass
class RunLog:
    """A run folder: recipe.json, metrics.jsonl, checkpoints, sample grids. Only the main
    process of a DDP run writes (enabled)."""

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
        old = recorded_recipe(self.folder)
        # An option added after the run began is absent from its recipe.json: it had the default.
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

    def write_samples(self, step: int, rows: list[list[torch.Tensor]]) -> None:
        """samples/stepNNNNNNN.png: a grid of (3, H, W) images in [0, 1] (make_grid)."""
        if self.enabled:
            write_image_atomic(self.folder / "samples" / f"step{step:07d}.png", make_grid(rows))


def recorded_recipe(folder: Path) -> dict[str, Any]:
    """The options recipe.json in a run folder records ({} when there is none)."""
    try:
        return json.loads((folder / "recipe.json").read_text())
    except (OSError, ValueError):
        return {}


def recipe_to_resume(recipe: Any, folder: Path) -> Any:
    """The recipe a resumed run continues with: the options given, except the hold-out seed,
    which stays the one the run's recipe.json records. Other held-out photos would change the
    training photos and what the saved best validation score measured."""
    seed = recorded_recipe(folder).get("holdout_seed", recipe.holdout_seed)
    return replace(recipe, holdout_seed=int(seed))


def make_grid(rows: list[list[torch.Tensor]]) -> np.ndarray:
    """Rows of (3, H, W) images in [0, 1] (same height per row) -> (H_total, W_total, 3)."""
    lines = [torch.cat(row, dim=2) for row in rows]
    width = max(line.shape[2] for line in lines)
    lines = [torch.nn.functional.pad(line, (0, width - line.shape[2])) for line in lines]
    return torch.cat(lines, dim=1).permute(1, 2, 0).clamp(0, 1).cpu().numpy()


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
