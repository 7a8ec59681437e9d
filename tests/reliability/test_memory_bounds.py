"""Bounded resources: ``gannorm sample`` checks a picture's memory before drawing anything and writes any
number of samples as an ``.npz`` in batches; ``gannorm eval`` bounds its sample counts. Peak memory is measured
on a child process with ``resource.getrusage`` (never a clock)."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import NO_EVAL, TINY_DIGITS

from gannorm import images
from gannorm.app.sampling import sample
from gannorm.app.training import train

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = [*TINY_DIGITS, "train.steps=2", *NO_EVAL, "train.threads=1"]
#: the child's address space is capped, so that code without the up-front checks fails fast (MemoryError)
#: instead of taking the machine's memory; python + torch + gannorm map well under 2 GiB
ADDRESS_SPACE = 3 << 30
#: the most resident memory a refused command or an .npz of 100000 samples may reach (python + torch + gannorm
#: take about 300 MB; the refused grid would need 4.9 GB, its samples alone 1.6 GB)
PEAK_RSS_MB = 700

#: runs argv[1:] as a child with its address space capped; prints its exit status, stderr and peak RSS
MEASURE = """
import json, resource, subprocess, sys
cap = int(sys.argv[1])
proc = subprocess.run(sys.argv[2:], capture_output=True, text=True,
                      preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (cap, cap)))
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # KiB on Linux
print(json.dumps({"rc": proc.returncode, "stderr": proc.stderr, "stdout": proc.stdout, "peak_mb": peak}))
"""


def measured(*args: str) -> dict:
    """``gannorm ARGS`` in a child (the only child of a fresh measuring process): rc, stderr, peak RSS in MB."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", MEASURE, str(ADDRESS_SPACE), sys.executable, "-m", "gannorm", *args],
                         env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A 2-step digits run: 8x8 one-channel images (enlarged 8 times in a grid)."""
    out = tmp_path_factory.mktemp("bounds")
    return train("digits", [*TINY, f"train.out_dir={out}", "train.run_name=r"]).run_dir


def test_a_huge_grid_is_refused_up_front_with_little_memory(run, tmp_path):
    """The reproduction: ``-n 100000`` enlarged every image before assembling the grid (over 8 GB)."""
    got = measured("sample", str(run), "-n", "100000", "-o", str(tmp_path / "g.png"))
    assert got["rc"] == 2, got["stderr"][-2000:]
    lines = got["stderr"].strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gannorm: error: 100000 samples as a PNG need ")
    assert "over the limit of 256 MiB" in lines[0] and "--memory-limit" in lines[0] and ".npz" in lines[0]
    assert got["peak_mb"] < PEAK_RSS_MB
    assert not any(tmp_path.iterdir())


def test_the_memory_limit_is_an_option(run, tmp_path):
    need = 100 * 64 * 5 + images.grid_size(100, 8, 8, min_cell=64)[0] * images.grid_size(100, 8, 8, min_cell=64)[1] * 3
    under = math.floor(need / 2**20 * 1000) / 1000  # MiB, just under what a 100-sample grid needs
    refused = measured("sample", str(run), "-n", "100", "-o", str(tmp_path / "a.png"), "--memory-limit", str(under))
    assert refused["rc"] == 2 and f"over the limit of {under:.0f} MiB" in refused["stderr"]
    ok = measured("sample", str(run), "-n", "100", "-o", str(tmp_path / "a.png"),
                  "--memory-limit", str(under + 0.01))
    assert ok["rc"] == 0, ok["stderr"]
    assert (tmp_path / "a.png").is_file()


def test_any_number_of_samples_goes_to_an_npz_in_batches(run, tmp_path):
    out = tmp_path / "s.npz"
    got = measured("sample", str(run), "-n", "100000", "-o", str(out))
    assert got["rc"] == 0, got["stderr"][-2000:]
    assert got["peak_mb"] < PEAK_RSS_MB
    arr = np.load(out)["samples"]
    assert arr.shape == (100000, 8, 8, 1) and arr.dtype == np.uint8
    # the same samples as `sample` draws in one go, converted here independently
    x = sample(run, 3000)
    expected = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    np.testing.assert_array_equal(arr[:3000], expected)
    assert [p.name for p in tmp_path.iterdir()] == ["s.npz"]  # no temporary left


def test_npz_flag_and_refusals(run, tmp_path):
    got = measured("sample", str(run), "-n", "5", "--npz", "-o", str(tmp_path / "s.png"))
    assert got["rc"] == 2 and got["stderr"].count("\n") == 1 and "NAME.npz" in got["stderr"]
    (tmp_path / "s.npz").write_bytes(b"keep")
    got = measured("sample", str(run), "-n", "5", "-o", str(tmp_path / "s.npz"))
    assert got["rc"] == 2 and "already exists" in got["stderr"]
    assert (tmp_path / "s.npz").read_bytes() == b"keep"


@pytest.mark.parametrize("option", ["--num-samples", "--num-real"])
def test_eval_sample_counts_have_an_upper_bound(run, option):
    got = measured("eval", str(run), "--metric", "cfd", option, str(10**9))
    assert got["rc"] == 2, got["stderr"][-2000:]
    lines = got["stderr"].strip().splitlines()
    assert len(lines) == 1 and f"{option} 1000000000 is over the limit of 500000 samples" in lines[0]
    assert got["peak_mb"] < PEAK_RSS_MB


# ------------------------------------------------------------------------------------------ the pieces
def reference_grid(x: torch.Tensor, nrow=None, pad=2, min_cell=0) -> np.ndarray:
    """The grid as gannorm drew it before: every image enlarged first, then placed (small inputs only)."""
    x = x.float().clamp(-1, 1)
    f = max(1, -(-min_cell // x.shape[-1])) if min_cell else 1
    x = x.repeat_interleave(f, dim=-1).repeat_interleave(f, dim=-2)
    n, c, h, w = x.shape
    x = x.expand(n, 3, h, w)
    arr = ((x.numpy() + 1) * 127.5).round().astype(np.uint8).transpose(0, 2, 3, 1)
    cols = nrow or max(1, math.ceil(math.sqrt(n)))
    rows = math.ceil(n / cols)
    grid = np.zeros((rows * (h + pad) + pad, cols * (w + pad) + pad, 3), np.uint8)
    for i in range(n):
        r, q = divmod(i, cols)
        grid[pad + r * (h + pad):pad + r * (h + pad) + h, pad + q * (w + pad):pad + q * (w + pad) + w] = arr[i]
    return grid


@pytest.mark.parametrize("shape,kwargs", [((7, 1, 8, 8), {"min_cell": 64}), ((10, 3, 5, 7), {"nrow": 3, "pad": 1}),
                                          ((5, 3, 32, 32), {"min_cell": 64}), ((1, 1, 16, 16), {})])
def test_the_grid_is_the_one_drawn_before(shape, kwargs):
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(0)) * 1.5
    grid = images.image_grid(x, **kwargs)
    np.testing.assert_array_equal(grid, reference_grid(x, **kwargs))
    assert grid.shape[:2] == images.grid_size(shape[0], shape[2], shape[3], kwargs.get("nrow"),
                                              kwargs.get("pad", 2), kwargs.get("min_cell", 0))


@pytest.mark.parametrize("n", [1, 15, 256, 257, 263, 513, 1000])
@pytest.mark.parametrize("z_dim", [1, 2, 3, 7, 128])
def test_z_in_batches_is_the_one_draw(n, z_dim):
    from gannorm.app.sampling import z_batches
    pieces = list(z_batches(n, z_dim, seed=5))
    assert all(len(p) <= 256 + 15 for p in pieces)
    one = torch.randn(n, z_dim, generator=torch.Generator().manual_seed(5))
    assert torch.equal(torch.cat(pieces), one)
