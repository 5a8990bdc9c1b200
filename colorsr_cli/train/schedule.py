"""When things happen in a run: how many steps it has, and at which steps it logs, validates
and saves its checkpoint."""

from __future__ import annotations

from dataclasses import dataclass

from colorsr_cli.train.runlog import Reporter


@dataclass(frozen=True)
class Schedule:
    """A run of total_steps steps of one batch each (per process), steps_per_epoch to an epoch.
    warmup_end: the step at which a warm-up phase ends whose best model is kept apart (as
    best_warmup.pt; the adversarial phase then chooses its own best), or None."""

    total_steps: int
    steps_per_epoch: int
    val_every: int
    checkpoint_every: int
    log_every: int
    warmup_end: int | None = None

    def epoch_of(self, step: int) -> int:
        return step // self.steps_per_epoch

    def ends_phase(self, step: int) -> bool:
        return step in (self.total_steps, self.warmup_end)

    def logs_at(self, step: int) -> bool:
        return step % self.log_every == 0 or self.ends_phase(step)

    def validates_at(self, step: int) -> bool:
        return step % self.val_every == 0 or self.ends_phase(step)

    def checkpoints_at(self, step: int) -> bool:
        return step % self.checkpoint_every == 0


def planned_steps(epochs: int, steps_per_epoch: int, max_steps: int | None, reporter: Reporter) -> int:
    """The run's length: epochs x steps_per_epoch, or max_steps if fewer. When the epochs end the
    run first, says so (a --max-steps that is never reached is otherwise a silent surprise)."""
    total = epochs * steps_per_epoch
    if max_steps is not None and max_steps > total:
        reporter.on_event(f"note: {epochs} epochs of {steps_per_epoch} steps end the run at step "
                          f"{total}, before --max-steps {max_steps} (raise --epochs to reach it)")
    return total if max_steps is None else min(total, max_steps)
