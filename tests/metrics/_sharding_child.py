"""Run by ``tests/metrics/test_sharding.py`` under ``torchrun --nproc_per_node=2``: :class:`Shards` on real ranks
(gloo). Each rank saves what it got to ``OUT/rank<r>.pkl``; the test compares it with the rows of the global
arrays, computed there independently.

- ``cases``: the global arrays ``F`` (float64 ``[7, 3, 2]``) and ``I`` (int64 ``[7, 2]``), both made on every
  rank from one seed; each rank "extracts" (``{"f": 2 F, "i": I + 1}``) its shard of the rows ``bounds`` gives,
  among the first ``n``, and the shards are gathered to rank 0 and to every rank;
- ``bad_count``: rank 1 hands over one row too few; every rank must fail with the same one-line error
  (none may wait for the others forever);
- ``main_first``: rank 0 runs first (it writes a file that rank 1's step reads); ``from_main``: rank 0's
  result reaches rank 1; then a one-line error on rank 0 reaches rank 1, which does not run the step.
"""
from __future__ import annotations

import datetime
import pickle
import sys
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from gannorm.errors import GannormError
from gannorm.metrics.sharding import Shards, ShardingError, extract_shard

#: (name, total rows, unit, rows gathered)
CASES = [("7 rows", 7, 1, 7), ("7 rows in blocks of 3, the first 5", 7, 3, 5),
         ("2 rows in blocks of 3: rank 1 has none", 2, 3, 2), ("no rows", 0, 1, 0)]


def global_arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"F": rng.standard_normal((7, 3, 2)), "I": rng.integers(0, 1000, (7, 2))}


def extract(x: torch.Tensor) -> dict[str, np.ndarray]:
    """A stand-in feature extractor on ``x`` ``[rows, 8]``: the float rows doubled, the integer rows plus one."""
    return {"f": 2 * x[:, :6].numpy().reshape(-1, 3, 2), "i": x[:, 6:].numpy().astype(np.int64) + 1}


def main(out_dir: Path) -> None:
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=60))
    shards = Shards.current()
    arrays = global_arrays()
    inputs = torch.from_numpy(np.concatenate([arrays["F"].reshape(7, 6), arrays["I"].astype(np.float64)], axis=1))
    result: dict = {"world": shards.world, "rank": shards.rank, "cases": {}}
    for name, total, unit, n in CASES:
        bounds = shards.bounds(total, unit)
        start, stop = bounds[shards.rank]
        mine = inputs[start:stop]
        result["cases"][name] = {"bounds": bounds,
                                 "to_main": extract_shard(extract, mine, shards, bounds, n, dst=0),
                                 "to_all": extract_shard(extract, mine, shards, bounds, n, dst=None)}
    try:
        local = {"f": np.zeros((3 if shards.rank == 0 else 1, 4))}
        shards.gather(local, [3, 2])
        result["bad_count"] = None
    except ShardingError as err:
        result["bad_count"] = str(err)

    flag = out_dir / "rank0-ran-first"

    def first() -> str:
        if shards.main:
            flag.write_text("yes")
            return "rank 0"
        return f"rank {shards.rank} saw {flag.read_text()}"
    result["main_first"] = shards.main_first(first)
    result["from_main"] = shards.from_main(lambda: {"numbers": f"computed on rank {shards.rank}"})
    ran = []

    def failing() -> None:
        ran.append(shards.rank)
        raise GannormError("no weights file w.pth; give --inception-weights")
    try:
        shards.main_first(failing)
        result["main_first_error"] = None
    except GannormError as err:
        result["main_first_error"] = (type(err).__name__, str(err))
    result["ran_failing"] = ran
    (out_dir / f"rank{shards.rank}.pkl").write_bytes(pickle.dumps(result))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
