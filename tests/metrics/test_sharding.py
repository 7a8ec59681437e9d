"""Sharded evaluation's primitive (``gannorm.metrics.sharding``): contiguous shards of whole blocks, and a gather
that puts the ranks' rows back in their original order, bit for bit, for shards of any sizes (empty ones too).
The gather runs on two real ranks (torchrun, gloo) in ``_sharding_child.py``; the expected rows are computed
here from the global arrays."""
from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from gannorm.metrics.sharding import Shards, ShardingError, extract_shard

sys.path.insert(0, str(Path(__file__).parent))
from _sharding_child import CASES, extract, global_arrays  # noqa: E402

CHILD = Path(__file__).with_name("_sharding_child.py")


def covers(bounds: list[tuple[int, int]], total: int) -> bool:
    """Whether the shards are contiguous, in order, and cover ``0..total`` exactly."""
    ends = [0] + [stop for _, stop in bounds]
    return all(start == prev for (start, _), prev in zip(bounds, ends)) and ends[-1] == total


@pytest.mark.parametrize("world", [1, 2, 3, 8])
@pytest.mark.parametrize("total", [0, 1, 7, 255, 256, 257, 600, 50_000])
@pytest.mark.parametrize("unit", [1, 50, 256])
def test_bounds_are_contiguous_whole_blocks_balanced_to_one_block(world, total, unit):
    for rank in range(world):
        bounds = Shards(world, rank).bounds(total, unit)
        assert bounds == Shards(world, 0).bounds(total, unit)  # every rank computes the same shards
        assert covers(bounds, total)
        assert all(start % unit == 0 for start, stop in bounds if stop > start)  # each starts a block
        blocks = [-(-(stop - start) // unit) for start, stop in bounds]
        assert max(blocks) - min(blocks) <= 1 and blocks == sorted(blocks, reverse=True)


def test_bounds_examples_and_counts():
    assert Shards(2, 0).bounds(7) == [(0, 4), (4, 7)]
    assert Shards(2, 1).bounds(600, 256) == [(0, 512), (512, 600)]  # 3 batches of the generator: 2 + 1
    assert Shards(3, 0).bounds(2, 256) == [(0, 2), (2, 2), (2, 2)]
    assert Shards(2, 1).rows(600, 256) == (512, 600)
    assert Shards.counts([(0, 512), (512, 600)], 500) == [500, 0]
    assert Shards.counts([(0, 512), (512, 600)], 550) == [512, 38]
    with pytest.raises(ValueError, match="rank 2 does not fit a world of 2"):
        Shards(2, 2)


def test_one_process_is_the_plain_path():
    assert Shards.current() == Shards() and not Shards().distributed
    x = torch.arange(24, dtype=torch.float64).reshape(3, 8)
    out = extract_shard(extract, x, Shards(), [(0, 3)], 2)
    want = extract(x[:2])
    assert set(out) == {"f", "i"} and all(np.array_equal(out[k], want[k]) for k in want)
    assert Shards().main_first(lambda: 5) == 5 and Shards().broadcast("x") == "x"
    with pytest.raises(ShardingError, match=r"rank 0 extracted \{'f': 2\} rows for a shard of 3"):
        Shards().gather({"f": np.zeros((2, 1))}, [3])


@pytest.mark.slow
def test_gather_on_two_ranks_restores_the_order_for_uneven_shards(tmp_path):
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(CHILD), str(tmp_path)], env={**os.environ, "OMP_NUM_THREADS": "1"},
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [pickle.loads((tmp_path / f"rank{r}.pkl").read_bytes()) for r in range(2)]
    assert [(r["world"], r["rank"]) for r in ranks] == [(2, 0), (2, 1)]
    arrays = global_arrays()
    for name, total, unit, n in CASES:
        zero, one = ranks[0]["cases"][name], ranks[1]["cases"][name]
        assert zero["bounds"] == one["bounds"] == Shards(2, 0).bounds(total, unit)
        want = {"f": 2 * arrays["F"][:n], "i": arrays["I"][:n] + 1} if n else {}
        assert one["to_main"] is None  # rank 0 alone receives a gather to rank 0
        for got in (zero["to_main"], zero["to_all"], one["to_all"]):
            assert set(got) == set(want), name
            for key in want:
                assert got[key].dtype == want[key].dtype and got[key].shape == want[key].shape, (name, key)
                assert np.array_equal(got[key], want[key]), (name, key)  # bit for bit, in the original order
    # 7 rows over 2 ranks: 4 + 3; the first 5 of blocks of 3: rank 0 gives 5 rows, rank 1 none
    assert ranks[0]["cases"]["7 rows"]["bounds"] == [(0, 4), (4, 7)]
    assert ranks[0]["cases"]["7 rows in blocks of 3, the first 5"]["bounds"] == [(0, 6), (6, 7)]
    # a rank whose rows are not its count: the same one-line error on both ranks, not a hang
    assert ranks[0]["bad_count"] == ranks[1]["bad_count"]
    assert "rank 1 extracted {'f': 1} rows for a shard of 2" in ranks[0]["bad_count"]
    # main_first: rank 0's step ran before rank 1's; rank 0's one-line error stops rank 1 before its step
    assert [r["main_first"] for r in ranks] == ["rank 0", "rank 1 saw yes"]
    assert [r["from_main"] for r in ranks] == [{"numbers": "computed on rank 0"}] * 2
    message = "no weights file w.pth; give --inception-weights"
    assert ranks[0]["main_first_error"] == ("GannormError", message)
    assert ranks[1]["main_first_error"] == ("ShardingError", message)
    assert ranks[0]["ran_failing"] == [0] and ranks[1]["ran_failing"] == []
