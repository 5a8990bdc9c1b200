"""Scale-out of `restore` under torchrun: every rank takes a disjoint, deterministic shard of
the sorted inputs on its own device (LOCAL_RANK), and rank 0 gathers the results. Skip-existing
makes a rerun after a dead node finish only what is missing. Without torchrun: one process."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TypeVar

import torch.distributed as dist

T = TypeVar("T")


@dataclass(frozen=True)
class Shard:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def current_shard() -> Shard:
    """This process's place, from torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK)."""
    return Shard(int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")),
                 int(os.environ.get("LOCAL_RANK", "0")))


def take_shard(items: list[T], shard: Shard) -> list[T]:
    """Round-robin over the (already sorted) items: disjoint, covering, balanced by count."""
    return items[shard.rank::shard.world]


def gather_to_main(value: T, shard: Shard, backend: str = "gloo") -> list[T] | None:
    """Every rank's value, in rank order, on rank 0 (None elsewhere). Objects travel through
    the gloo backend, which works whatever devices the ranks compute on."""
    if shard.world == 1:
        return [value]
    if not dist.is_initialized():
        dist.init_process_group(backend)
    gathered: list[T] | None = [None] * shard.world if shard.main else None  # type: ignore[list-item]
    dist.gather_object(value, gathered, dst=0)
    dist.destroy_process_group()
    return gathered
