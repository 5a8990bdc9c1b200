"""The training skeleton both recipes run, top to bottom: set up the process -> data -> models
-> resume or start -> for each batch: step -> log -> validate, keep the best -> checkpoint.

A recipe (train/color.py, train/sr.py) supplies what differs as a Trainer: its photos, its
networks, one optimisation step and its validation score. A run folder's last.pt holds
everything needed to resume on exactly the same schedule; best.pt is the generator (or its
average) that validated best, as an inference weight file."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader

from colorsr_cli.distributed import Shard
from colorsr_cli.models import arch_name_of, config_dict
from colorsr_cli.train.data import RunView, TrainingData, split_summary
from colorsr_cli.train.distributed import seed_everything, start_process, unwrap, use_mixed_precision, wrap
from colorsr_cli.train.recipes import TrainingRecipe
from colorsr_cli.train.runlog import (
    Reporter,
    RunLog,
    recipe_to_resume,
    resume_training_state,
    save_checkpoint,
)
from colorsr_cli.train.schedule import Schedule, planned_steps
from colorsr_cli.weightfile import save_weight_file


@dataclass(frozen=True)
class Run:
    """Where a run computes (device, its process among torchrun's, bf16 autocast or not) and
    where it reports (its folder, its caller)."""

    device: torch.device
    ddp: Shard
    amp: bool
    log: RunLog
    reporter: Reporter


@dataclass
class GAN:
    """A generator and its discriminator with their optimisers, under the names a checkpoint
    keeps them by. G_ema: a moving average of G's weights, validated and kept instead of G."""

    G: torch.nn.Module
    D: torch.nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    G_ema: torch.nn.Module | None = None

    def parts(self) -> dict[str, Any]:
        named = {"G": self.G, "D": self.D, "opt_g": self.opt_g, "opt_d": self.opt_d}
        return named | ({"G_ema": self.G_ema} if self.G_ema is not None else {})

    def judged(self) -> torch.nn.Module:
        """The generator that is validated and kept as best.pt."""
        return unwrap(self.G_ema if self.G_ema is not None else self.G)


class Trainer(Protocol):
    """What a recipe gives the skeleton; train() calls these in this order."""

    # Whether the best model of the pixel-loss warm-up is kept apart (best_warmup.pt) and the
    # adversarial phase's best chosen among its own validations only.
    keeps_warmup_best: ClassVar[bool]
    score_name: str  # what validate() returns (lower is better), as logged
    score_label: str  # the same, in words
    val_view: dict  # how validation inputs are made; a resume with another view drops the best
    best_meta: dict  # recorded in best.pt besides the step and the score

    def load_data(self) -> TrainingData: ...
    def build(self, data: TrainingData, total_steps: int, resume: bool) -> GAN: ...
    def sample(self, index: int, rng: np.random.Generator) -> Any: ...
    def step(self, gan: GAN, batch: Any, step: int) -> dict[str, torch.Tensor]: ...
    def validate(self, gan: GAN, step: int) -> float: ...
    def refresh_statistics(self, gan: GAN, step: int) -> None:
        """Make the judged generator's BatchNorm statistics match its weights before it is
        validated or saved (a moving average's copied statistics do not)."""


def train(make_trainer: Callable[[Any, Run], Trainer], recipe: TrainingRecipe, resume: bool = False,
          reporter: Reporter | None = None) -> Path:
    """Run (or, resume=True, continue from its last.pt) the recipe; returns the run folder."""
    reporter = reporter or Reporter()
    out = Path(recipe.out)
    device, ddp = start_process(recipe.device, recipe.threads)
    if resume:
        recipe = recipe_to_resume(recipe, out)
    log = RunLog(out, enabled=ddp.main)
    seed_everything(recipe.seed)
    run = Run(device, ddp, use_mixed_precision(device, recipe.amp), log, reporter)
    trainer = make_trainer(recipe, run)

    # data
    data = trainer.load_data()
    reporter.on_event(split_summary(recipe.data, len(data.photos), len(data.train_idx),
                                    len(data.val_idx), recipe.val))
    steps_per_epoch = len(data.train_idx) // (recipe.batch_size * ddp.world)
    if steps_per_epoch == 0:
        raise ValueError(f"{recipe.data}: {len(data.train_idx)} training images are fewer than one "
                         f"batch ({recipe.batch_size} x {ddp.world} processes)")
    total = planned_steps(recipe.epochs, steps_per_epoch, recipe.max_steps, reporter)
    warmup_end = (min(recipe.pretrain_steps, total)
                  if trainer.keeps_warmup_best and recipe.pretrain_steps > 0 else None)
    plan = Schedule(total, steps_per_epoch, recipe.val_every or steps_per_epoch,
                    recipe.checkpoint_every, recipe.log_every, warmup_end)

    # models, fresh or as the checkpoint left them
    gan = trainer.build(data, total, resume)
    step, best_val = 0, float("inf")
    if resume:
        step, best_val = resume_training_state(out / "last.pt", recipe.lr, trainer.val_view,
                                               reporter, **gan.parts())
        changed = log.record_resume(recipe, step)
        reporter.on_event(f"resumed from step {step}" + (
            f" with changed options: {', '.join(sorted(changed))}" if changed else ""))
    else:
        log.write_recipe(recipe)
    if step == warmup_end:
        best_val = float("inf")  # resumed at the warm-up's end: the adversarial phase starts afresh
    gan.G, gan.D = wrap(gan.G, ddp), wrap(gan.D, ddp)

    def checkpoint() -> None:
        if ddp.main:
            trainer.refresh_statistics(gan, step)
            state = {name: unwrap(part).state_dict() for name, part in gan.parts().items()}
            # The generator's architecture and config travel with it, so any checkpoint exports.
            G = unwrap(gan.G)
            save_checkpoint(out / "last.pt", step=step, best_val=best_val, **state,
                            G_arch=arch_name_of(G), G_config=config_dict(G), val_view=trainer.val_view)

    # The batches of steps [step, total) in their fixed order (see RunView).
    view = RunView(data.train_idx, trainer.sample, recipe.seed, recipe.batch_size, steps_per_epoch,
                   step, total, ddp)
    loader = DataLoader(view, batch_size=recipe.batch_size, shuffle=False, num_workers=recipe.workers,
                        pin_memory=device.type == "cuda")
    tic, seen = time.time(), 0
    for batch in loader:
        epoch = plan.epoch_of(step)
        losses = trainer.step(gan, batch, step)
        step += 1
        seen += recipe.batch_size * ddp.world
        if plan.logs_at(step):
            # Steps return detached loss tensors, read here only: a .item() per loss per step
            # would make the host wait for the GPU every step.
            losses = {k: float(v) for k, v in losses.items()}
            rate = seen / max(time.time() - tic, 1e-9)
            log.log({"step": step, "epoch": epoch} | losses | {"img_per_s": round(rate, 2)})
            reporter.on_step(step, total, losses | {"img/s": rate})
        if plan.validates_at(step):
            trainer.refresh_statistics(gan, step)
            val = trainer.validate(gan, step)
            if val < best_val:
                best_val = val
                if ddp.main:
                    save_weight_file(gan.judged(), out / "best.pt", meta={
                        "recipe": recipe.name, "step": step, "val_l1": val} | trainer.best_meta)
            log.log({"step": step, "epoch": epoch, trainer.score_name: val,
                     f"best_{trainer.score_name}": best_val})
            reporter.on_event(f"step {step}: {trainer.score_label} {val:.4f} (best {best_val:.4f})")
            checkpoint()
        elif plan.checkpoints_at(step):
            checkpoint()
        if step == warmup_end:
            # The warm-up (SRResNet) model is the pixel-fidelity choice next to the GAN's; the
            # adversarial phase trades pixel fidelity for texture, so it picks its own best.
            if ddp.main and (out / "best.pt").exists():
                shutil.copyfile(out / "best.pt", out / "best_warmup.pt")
            if step < total:
                best_val = float("inf")
    checkpoint()
    return out
