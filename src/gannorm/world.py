"""This process's place among the ranks of a process group: the base of the evaluation's
:class:`gannorm.metrics.sharding.Shards` and the trainer's :class:`gannorm.training.distributed.Ranks`.

``RankPlace()`` is one process (``world == 1``, ``rank == 0``), for which everything built on it is the plain
single-process path. It relies on ``torch.distributed`` only.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist

__all__ = ["RankPlace"]

P = TypeVar("P", bound="RankPlace")


@dataclass(frozen=True)
class RankPlace:
    """Rank ``rank`` of ``world`` ranks (``RankPlace()``: a single process).

    Args:
        world: the number of ranks (>= 1).
        rank: this process's rank, in ``[0, world)``.

    Example:
        >>> RankPlace(4, 0).main, RankPlace(4, 3).distributed, RankPlace().distributed
        (True, True, False)
    """

    world: int = 1
    rank: int = 0

    def __post_init__(self) -> None:
        if self.world < 1 or not 0 <= self.rank < self.world:
            raise ValueError(f"rank {self.rank} does not fit a world of {self.world}")

    @classmethod
    def current(cls: type[P]) -> P:
        """The place in the initialized default process group; one process if there is none (the other
        fields of a subclass keep their defaults)."""
        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_world_size(), dist.get_rank())
        return cls()

    @property
    def distributed(self) -> bool:
        """Whether there is more than one rank."""
        return self.world > 1

    @property
    def main(self) -> bool:
        """Rank 0, which alone writes files (a run folder, an evaluation's output)."""
        return self.rank == 0

    @staticmethod
    def comm_device() -> torch.device:
        """Where a collective's tensors go: this rank's current GPU for ``nccl``, the CPU otherwise (and
        without a process group)."""
        backend = dist.get_backend() if dist.is_available() and dist.is_initialized() else "gloo"
        return torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")
