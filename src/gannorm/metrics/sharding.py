"""Evaluation split over the ranks of a process group: each rank extracts the features of its shard of the
rows, then the shards are gathered, in order, so that the full ``[N, F]`` arrays are those of one process.

:class:`Shards` is this process's place among the ranks of the initialized ``torch.distributed`` process
group (``Shards.current()``; without a group, or with one rank, it is ``Shards()``: one process, for which
every method below is the identity or a plain call). It relies on ``torch.distributed`` only, so it works
under any launcher that has joined the group (``torchrun -m gannorm eval``, a user's own script), on
``gloo`` (CPU tensors) and ``nccl`` (the tensors travel through this rank's current GPU).

The contract: every rank calls the same methods in the same order with the same arguments (the counts and
sizes are computed from the global ``N`` on every rank, never exchanged), and

- :meth:`Shards.bounds` cuts ``N`` rows into ``world`` contiguous shards, ``[start, stop)`` in rank order,
  whose boundaries fall on multiples of ``unit`` (the generator's batch, so each rank generates exactly the
  batches one process generates) and whose numbers of units differ by at most one;
- :meth:`Shards.gather` puts the ranks' arrays together in rank order: shards of different sizes, empty
  ones included (a rank with no rows passes ``{}``), are padded to the largest for the collective and cut
  back, so the result is the concatenation of the shards, row for row, bit for bit;
- :meth:`Shards.from_main` computes on rank 0 alone (the numbers, from the gathered features) and hands the
  result to every rank; :meth:`Shards.main_first` runs a step on rank 0 before the others (building an
  extractor may download weights or train the digits classifier into a cache, which the other ranks then
  read). A one-line error on rank 0 stops every rank with that line instead of leaving them waiting.

Each collective waits at most the process group's timeout; a failed one is a one-line
:class:`ShardingError`.
"""
from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, Sequence, TypeVar, cast

import numpy as np
import torch
import torch.distributed as dist

from ..errors import GannormError
from ..world import RankPlace

T = TypeVar("T")
Arrays = dict[str, np.ndarray]


class ShardingError(GannormError, RuntimeError):
    """A collective of a sharded evaluation failed, or the ranks' shards do not fit together."""


def failed_collective(err: RuntimeError) -> tuple[int, int, str]:
    """This process's rank, the world size and the first line of a backend's error for a failed collective,
    without the backend's ``[file:line]`` prefix and its generic advice."""
    text = str(err).strip() or type(err).__name__
    first = re.sub(r"^\[[^\]]*\]\s*", "", text.splitlines()[0]).split(". This is typically")[0]
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    return rank, world, first


@contextlib.contextmanager
def _collective(what: str) -> Iterator[None]:
    """A failed collective (a peer died, the group's timeout passed) as a one-line :class:`ShardingError`."""
    try:
        yield
    except ShardingError:
        raise
    except RuntimeError as err:
        rank, world, first = failed_collective(err)
        raise ShardingError(f"rank {rank} of {world}: {what} of the sharded evaluation failed ({first}); another "
                            "rank died or did not arrive within the process group's timeout; torchrun's report "
                            "names the rank that failed first") from err


@dataclass(frozen=True)
class Shards(RankPlace):
    """This process's place among ``world`` ranks (``Shards()``: one process, the plain path; ``Shards.current()``:
    the initialized process group's). Rank 0 (:attr:`main`) receives the gathered arrays, computes the numbers
    and writes the files."""

    # ---------------------------------------------------------------- shards
    def bounds(self, total: int, unit: int = 1) -> list[tuple[int, int]]:
        """Every rank's contiguous rows ``[start, stop)`` of ``total``, in rank order: the ``ceil(total / unit)``
        blocks of ``unit`` rows (the last may be short) dealt out so that the first ``blocks % world`` ranks
        get one block more than the others."""
        if total < 0 or unit < 1:
            raise ValueError(f"cannot shard {total} rows in blocks of {unit}")
        blocks = -(-total // unit)
        each, extra = divmod(blocks, self.world)
        out, start = [], 0
        for r in range(self.world):
            stop = start + each + (r < extra)
            out.append((min(start * unit, total), min(stop * unit, total)))
            start = stop
        return out

    def rows(self, total: int, unit: int = 1) -> tuple[int, int]:
        """This rank's rows ``[start, stop)`` of ``total`` (:meth:`bounds`)."""
        return self.bounds(total, unit)[self.rank]

    @staticmethod
    def counts(bounds: Sequence[tuple[int, int]], n: int) -> list[int]:
        """How many of each shard's rows are among the first ``n`` rows (``n`` may be fewer than the total)."""
        return [max(0, min(stop, n) - min(start, n)) for start, stop in bounds]

    # ---------------------------------------------------------------- collectives
    def gather(self, local: Mapping[str, np.ndarray], counts: Sequence[int], dst: int | None = 0) -> Arrays | None:
        """The ranks' arrays concatenated in rank order: ``{key: [sum(counts), ...]}``.

        ``local`` holds this rank's ``counts[rank]`` rows of each array (``{}`` when it has none); every
        rank with rows must give the same keys, trailing shapes and dtypes. With ``dst`` a rank, only that
        rank receives the result (the others get None); with ``dst=None`` every rank does.
        """
        counts = [int(c) for c in counts]
        if len(counts) != self.world:
            raise ValueError(f"gather needs one count per rank ({self.world}), got {len(counts)}")
        meta = {k: (tuple(v.shape), str(v.dtype)) for k, v in local.items()}
        if not self.distributed:
            _check_shards([meta], counts)
            return {k: np.asarray(v) for k, v in local.items()}
        metas: list[Any] = [None] * self.world
        with _collective("the exchange of shard shapes"):
            dist.all_gather_object(metas, meta)
        layout = _check_shards(metas, counts)
        device = RankPlace.comm_device()
        largest = max(counts)
        out: Arrays = {}
        for key in sorted(layout):
            tail, dtype = layout[key]
            padded = np.zeros((largest, *tail), dtype=dtype)
            if counts[self.rank]:
                padded[:counts[self.rank]] = local[key]
            mine = torch.from_numpy(padded).to(device)
            parts = [torch.empty_like(mine) for _ in range(self.world)] if dst is None or self.rank == dst else None
            with _collective(f"the gather of {key!r}"):
                if dst is None:
                    dist.all_gather(parts, mine)
                else:
                    dist.gather(mine, parts, dst=dst)
            if parts is not None:
                out[key] = np.concatenate([p[:c].cpu().numpy() for p, c in zip(parts, counts)])
        return out if dst is None or self.rank == dst else None

    def broadcast(self, value: T, src: int = 0) -> T:
        """``src``'s ``value`` (any picklable object) on every rank."""
        if not self.distributed:
            return value
        box: list[Any] = [value if self.rank == src else None]
        with _collective("a message from rank 0" if src == 0 else f"a message from rank {src}"):
            dist.broadcast_object_list(box, src=src)
        return box[0]

    def from_main(self, make: Callable[[], T]) -> T:
        """``make()`` on rank 0 and its result (any picklable object) on every rank.

        A :class:`GannormError` of rank 0 is raised on every rank with its one-line message; any other
        exception of rank 0 stops the others with a line naming it (rank 0 raises its own).
        """
        if not self.distributed:
            return make()
        if not self.main:
            kind, value = cast("tuple[str, Any]", self.broadcast(None))  # rank 0's (kind, value)
            if kind == "error":
                raise ShardingError(value)
            return value
        try:
            value = make()
        except GannormError as err:
            self.broadcast(("error", str(err)))
            raise
        except BaseException as err:
            self.broadcast(("error", f"rank 0 failed: {type(err).__name__}: {err}"))
            raise
        self.broadcast(("ok", value))
        return value

    def main_first(self, make: Callable[[], T]) -> T:
        """``make()`` on rank 0, then on the other ranks, each returning its own result (e.g. a network rank 0
        may first have to download or train into a cache that the others then read). Rank 0's errors stop
        every rank as :meth:`from_main` says, before the others run ``make``."""
        if not self.distributed:
            return make()
        box: list[Any] = []

        def on_main() -> None:
            box.append(make())
        self.from_main(on_main)
        return box[0] if self.main else make()

    def barrier(self) -> None:
        """Wait for every rank."""
        if self.distributed:
            with _collective("a barrier"):
                dist.barrier()


def _check_shards(metas: Sequence[Mapping[str, tuple[tuple[int, ...], str]]],
                  counts: Sequence[int]) -> dict[str, tuple[tuple[int, ...], str]]:
    """The common ``{key: (trailing shape, dtype)}`` of the ranks' arrays; a :class:`ShardingError` (the same
    on every rank, which all see every rank's shapes) if a rank's rows are not its count or the ranks' keys,
    trailing shapes or dtypes differ."""
    layout: dict[str, tuple[tuple[int, ...], str]] | None = None
    for rank, (meta, count) in enumerate(zip(metas, counts)):
        if not count:
            if any(shape[0] for shape, _ in meta.values()):
                raise ShardingError(f"rank {rank} has rows for an empty shard; this is a bug in gannorm's sharded "
                                    "evaluation: please report it")
            continue
        rows = {k: shape[0] for k, (shape, _) in meta.items()}
        if not rows or set(rows.values()) != {count}:
            raise ShardingError(f"rank {rank} extracted {rows or 'nothing'} rows for a shard of {count}; this is a "
                                "bug in gannorm's sharded evaluation: please report it")
        mine = {k: (shape[1:], dtype) for k, (shape, dtype) in meta.items()}
        if layout is None:
            layout = mine
        elif mine != layout:
            raise ShardingError(f"rank {rank}'s features {mine} do not match the first shard's {layout}; the ranks "
                                "must run the same extractor")
    return layout or {}




def extract_shard(extract: Callable[[torch.Tensor], Arrays], x: torch.Tensor | None, shards: Shards,
                  bounds: Sequence[tuple[int, int]], n: int, dst: int | None = 0) -> Arrays | None:
    """The outputs of ``extract`` on the first ``n`` rows of a global batch, of which this rank holds ``x``, its
    shard ``bounds[rank]``: each rank extracts its rows among the first ``n``, and :meth:`Shards.gather`
    puts them together in order on ``dst`` (every rank with ``dst=None``; the others get None). ``x`` is None
    on a rank that holds no rows."""
    counts = Shards.counts(bounds, n)
    mine = counts[shards.rank]
    local: Arrays = {}
    if mine:
        assert x is not None, "a rank with rows to extract holds them"
        local = extract(x[:mine])
    return shards.gather(local, counts, dst=dst)
