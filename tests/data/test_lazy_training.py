"""Training on a lazily read dataset: bitwise the in-memory run (and its resume), workers stopped however it ends."""
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from data_fakes import children

from gannorm import config as config_mod
from gannorm.data import LazyDataset
from gannorm.runfolder import RunFolder
from gannorm.training import Callback, Trainer

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = ["data.name=imagefolder", "data.resolution=16", "model.arch=cnn", "model.width=0.125",
        "train.batch_size_d=8", "train.batch_size_g=16", "train.n_dis=2", "train.real_hflip=true",
        "train.log_every=1", "train.sample_every=100", "train.checkpoint_every=100", "train.progress=false",
        "train.tensorboard=false"]


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    from PIL import Image
    root = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    for i in range(40):
        Image.fromarray(rng.integers(0, 256, (20, 18, 3), dtype=np.uint8)).save(root / f"{i:03d}.png")
    return root


def _cfg(images, out, in_memory, *extra):
    return config_mod.load(None, TINY + [f"data.root={images}", f"train.out_dir={out}",
                                         f"data.in_memory={str(in_memory).lower()}", "data.workers=1", *extra])


def _weights(run_dir):
    state = RunFolder.open(run_dir).load_checkpoint()
    return {f"{net}.{k}": v for net in ("G", "D") for k, v in state[net].items()}


def test_lazy_run_and_its_resume_equal_the_in_memory_run(images, tmp_path):
    before = children()
    memory = Trainer(_cfg(images, tmp_path / "m", True, "train.steps=3")).run()
    lazy = Trainer(_cfg(images, tmp_path / "l", False, "train.steps=3"))
    assert isinstance(lazy.data, LazyDataset)
    lazy_result = lazy.run()
    assert lazy.data.stats.batches == 6 and lazy.data.stats.prefetched >= 1  # decoded ahead, still equal
    assert children() == before  # the run stopped its workers
    part = Trainer(_cfg(images, tmp_path / "p", False, "train.steps=2")).run()
    resumed = Trainer(_cfg(images, tmp_path / "unused", False, "train.steps=3"), resume=part.run_dir).run()
    want = _weights(memory.run_dir)
    for got in (_weights(lazy_result.run_dir), _weights(resumed.run_dir)):
        assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)


class _Fail(Callback):
    def __init__(self, error):
        self.error = error

    def on_step(self, trainer, scalars):
        raise self.error


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("error", [RuntimeError("boom"), KeyboardInterrupt()])
def test_workers_stop_when_a_run_fails_or_is_interrupted(images, tmp_path, error):
    before = children()
    trainer = Trainer(_cfg(images, tmp_path, False, "train.steps=3"), callbacks=[_Fail(error)])
    with pytest.raises(type(error)):
        trainer.run()
    assert trainer.data.stats.batches == 2 and children() == before


@pytest.mark.slow
def test_two_ranks_decode_only_their_shards_and_match_one_process(images, tmp_path):
    """Each rank decodes its half of every global batch; the weights agree with one process's (to float
    summation order: the gradients are summed over the ranks; Adam's eps 1e-3 keeps the rounding noise of
    near-zero gradients, such as those of biases before a BatchNorm, from becoming whole steps)."""
    extra = ["train.steps=3", "train.threads=1", "optim.eps=1e-3"]
    common = TINY + [f"data.root={images}", f"train.out_dir={tmp_path}", *extra]
    one = Trainer(_cfg(images, tmp_path, True, *extra, "train.run_name=one")).run()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(Path(__file__).with_name("_lazy_dist_child.py")), *common, "train.run_name=two"]
    done = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = re.findall(r"rank (\d) batches (\d+) decoded (\d+) missed (\d+)", done.stdout)
    assert sorted(r[0] for r in ranks) == ["0", "1"]
    for _, batches, decoded, missed in ranks:  # 4 of each global batch of 8, also when decoding ahead
        decodes = int(batches) + int(missed) + np.arange(2)  # + the batch decoded ahead after the last, if any
        assert int(batches) == 6 and int(decoded) in 4 * decodes
    want, got = _weights(one.run_dir), _weights(tmp_path / "two")
    for k, w in want.items():
        if not w.is_floating_point():
            assert torch.equal(got[k], w), k
        else:
            assert float((got[k] - w).norm()) <= 1e-5 * max(float(w.norm()), 0.01), k
