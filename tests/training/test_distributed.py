"""Data-parallel training with torchrun (``gannorm.training.distributed``, ``docs/distributed.md``).

The contract: ``torchrun --nproc_per_node=N -m gannorm train ...`` is the single-process run with the same
global batch, up to floating-point summation order. The end-to-end tests train the same tiny config on two
ranks (gloo, a subprocess) and in one process (here), then compare every tensor of the final checkpoints
(G, D with its power-iteration vectors, the EMA, the optimizers' moments): each within 1e-5 of the single
process's, relative to its norm (or to 0.01 for tensors smaller than that; the optimizers' moments, which
are gradient statistics, within 1e-4). Every run of two ranks also
checks, before it exits, that both ranks hold the same state bit for bit (it prints the line asserted
below and fails otherwise; that the check catches a one-ulp difference is tested on real ranks too).
Then each checkpoint resumes on the other number of ranks and both continue alike.

The image tests use Adam's eps = 1e-3: a bias right before a BatchNorm (or one whose loss terms cancel)
has a gradient that is zero in exact arithmetic, and with a tiny eps Adam turns its rounding noise, which
differs with the summation order, into steps of up to the learning rate, so such tensors would differ by
O(lr) between any two summation orders, one process or two.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from gannorm.app.training import resume, train
from gannorm.errors import ConfigError, GannormError
from gannorm.penalties import interpolates
from gannorm.runfolder import load_checkpoint
from gannorm.training import Trainer
from gannorm.training.distributed import (RankFailure, Ranks, SyncBatchNorm, check_supported, disagreement,
                                          ranks_from_env, sync_batch_norm)
from gannorm import config as config_mod

pytestmark = pytest.mark.usefixtures("one_thread")

CHILD = Path(__file__).with_name("_dist_child.py")
QUIET = ["train.threads=1", "train.progress=false", "train.tensorboard=false", "train.eval_every=0"]
AGREE = "gannorm: the 2 ranks agree bitwise"


# ------------------------------------------------------------------------------------------ helpers
def torchrun(args: list[str], cwd: Path, timeout: float = 180, background: bool = False):
    """``python -m torch.distributed.run --standalone --nproc_per_node=2 ARGS`` (one thread per rank): its
    CompletedProcess, or with ``background`` the running Popen (in its own session)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if background:
        return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def train_two_ranks(preset: str, overrides: list[str], cwd: Path) -> str:
    done = torchrun(["-m", "gannorm", "train", preset, *overrides], cwd)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stderr


def resume_two_ranks(run_dir: Path, overrides: list[str], cwd: Path) -> str:
    done = torchrun(["-m", "gannorm", "train", "--resume", str(run_dir), *overrides], cwd)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stderr


def tensors(state, prefix=""):
    """Every floating-point tensor of a checkpoint (models, EMA, optimizer moments), by name."""
    if isinstance(state, dict):
        for k, v in state.items():
            yield from tensors(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(state, (list, tuple)):
        for i, v in enumerate(state):
            yield from tensors(v, f"{prefix}.{i}")
    elif isinstance(state, torch.Tensor) and state.is_floating_point():
        yield prefix, state


def assert_same_run(a_dir: Path, b_dir: Path, step: int) -> None:
    """The two runs' checkpoints: the same step and RNG states; G, D (with its power-iteration vectors) and
    the EMA within 1e-5, the optimizers' moments (gradient statistics, whose rounding differs more) within 1e-4."""
    a, b = load_checkpoint(a_dir / "checkpoint.pt"), load_checkpoint(b_dir / "checkpoint.pt")
    assert a["step"] == b["step"] == step
    assert torch.equal(a["rng"], b["rng"]) and torch.equal(a["torch_rng"], b["torch_rng"])  # one shared stream
    assert any(name.endswith(("_u", "_v", "_u1", "_v1")) for name in a["D"])  # power-iteration vectors compared
    for keys, rtol in ((("G", "D", "G_ema"), 1e-5), (("opt_g", "opt_d"), 1e-4)):
        b_tensors = dict(tensors({k: b[k] for k in keys}))
        for name, x in tensors({k: a[k] for k in keys}):
            y = b_tensors[name]
            err = float((x.double() - y.double()).norm() / max(float(y.double().norm()), 0.01))
            assert err <= rtol, f"{name}: relative difference {err:.3g}"


def single_and_two(tmp_path: Path, preset: str, overrides: list[str], steps: int) -> tuple[Path, Path, str]:
    """The run in one process (here) and on two ranks; their checkpoints agree."""
    common = [f"train.out_dir={tmp_path}", *QUIET, f"train.steps={steps}", *overrides]
    one = train(preset, [*common, "train.run_name=one"])
    assert one.status == "finished"
    log = train_two_ranks(preset, [*common, "train.run_name=two"], tmp_path)
    assert f"{AGREE} at G step {steps}" in log
    two = tmp_path / "two"
    assert json.loads((two / "status.json").read_text())["status"] == "finished"
    assert_same_run(two, one.run_dir, steps)
    return one.run_dir, two, log


# ------------------------------------------------------------------------------------------ end to end
@pytest.mark.slow
def test_ring8_mlp_sn_penalty_two_ranks_match_one_and_resume_across(tmp_path):
    """ring8 (MLP, SN, WGAN-GP with its random interpolation weights), 2 D steps per G step; then the
    one-process checkpoint resumes on two ranks and the two-rank one in one process, and they still agree."""
    overrides = ["model.width=0.125", "data.options={n: 2000}", "train.batch_size_d=32", "train.batch_size_g=32",
                 "train.n_dis=2", "train.penalty=wgan_gp", "train.log_every=1"]
    one, two, _ = single_and_two(tmp_path, "ring8", overrides, steps=4)
    rows = [json.loads(line) for line in (two / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]  # written once, by rank 0
    ref = [json.loads(line) for line in (one / "metrics.jsonl").read_text().splitlines()]
    for r, s in zip(rows, ref):  # the logged scalars are the global batch's
        for key in ("loss_d", "loss_g", "d_real", "d_fake", "penalty"):
            assert r[key] == pytest.approx(s[key], rel=1e-4, abs=1e-6), key
    resume_two_ranks(one, ["train.steps=6"], tmp_path)       # 1 rank -> 2 ranks
    assert resume(two, ["train.steps=6", "train.threads=1"]).status == "finished"  # 2 ranks -> 1 rank
    assert_same_run(one, two, 6)


@pytest.mark.slow
def test_digits_cnn_sync_batch_norm_bssn_two_ranks_match_one(tmp_path):
    """digits: G's BatchNorm (1d and 2d) on the global batch, BSSN D, flips, consistency regularization, EMA,
    samples in train mode and diagnostics on rank 0; the two-rank checkpoint resumes in one process."""
    overrides = ["model.width=0.125", "train.batch_size_d=16", "train.batch_size_g=16", "train.real_hflip=true",
                 "train.cr_weight=5", "train.ema_decay=0.9", "train.sample_mode=train", "train.num_samples_grid=8",
                 "diagnostics.batch_size=8", "optim.eps=1e-3"]
    one, two, _ = single_and_two(tmp_path, "digits", overrides, steps=3)
    assert len((two / "diagnostics.jsonl").read_text().splitlines()) == 2  # step 0 and the last, once each
    assert (two / "samples.png").is_file()
    for run in (one, two):
        assert resume(run, ["train.steps=4", "train.threads=1"]).status == "finished"
    assert_same_run(two, one, 4)


@pytest.mark.slow
def test_digits_gradient_normalization_two_ranks_match_one(tmp_path):
    """digits with GN (double backward through D on each rank's shard); resumes in one process."""
    overrides = ["model.width=0.125", "train.batch_size_d=16", "train.batch_size_g=16", "normalization.function=gn",
                 "diagnostics.every=0", "train.num_samples_grid=8", "optim.eps=1e-3"]
    one, two, _ = single_and_two(tmp_path, "digits", overrides, steps=3)
    for run in (one, two):
        assert resume(run, ["train.steps=4", "train.threads=1"]).status == "finished"
    assert_same_run(two, one, 4)


# ------------------------------------------------------------------------------------------ stops and failures
def _workers(parent: int) -> dict[int, int]:
    """{rank: pid} of torchrun's worker processes."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            env = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent:
            ranks = [e.split(b"=", 1)[1] for e in env if e.startswith(b"RANK=")]
            if ranks:
                out[int(ranks[0])] = int(entry.name)
    return out


def _start_long_run(tmp_path: Path) -> tuple[subprocess.Popen, Path, dict[int, int]]:
    """A long ring8 run on two ranks, returned once both ranks have trained a few steps."""
    run = tmp_path / "long"
    proc = torchrun(["-m", "gannorm", "train", "ring8", f"train.out_dir={tmp_path}", "train.run_name=long", *QUIET,
                     "model.width=0.125", "data.options={n: 2000}", "train.batch_size_d=16", "train.batch_size_g=16",
                     "train.steps=100000", "train.log_every=1", "train.checkpoint_every=100000"],
                    tmp_path, background=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        metrics = run / "metrics.jsonl"
        if metrics.is_file() and len(metrics.read_text().splitlines()) >= 3:
            workers = _workers(proc.pid)
            if len(workers) == 2:
                return proc, run, workers
        if proc.poll() is not None:
            pytest.fail(f"torchrun ended early: {proc.stderr.read()[-3000:]}")
        time.sleep(0.2)
    proc.kill()
    pytest.fail("the two ranks did not start training within 120 s")


@pytest.mark.slow
def test_sigterm_to_one_rank_stops_all_with_a_checkpoint(tmp_path):
    """SIGTERM to rank 1 alone: every rank stops after the same step, rank 0 writes the checkpoint."""
    proc, run, workers = _start_long_run(tmp_path)
    os.kill(workers[1], signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "interrupted", err[-3000:]
    assert 3 <= status["step"] < 100000
    assert load_checkpoint(run / "checkpoint.pt")["step"] == status["step"]
    assert f"{AGREE} at G step {status['step']}" in err
    assert "got signal" in err


@pytest.mark.slow
def test_a_dead_rank_fails_the_job_without_hanging(tmp_path):
    """SIGKILL to rank 1: torchrun ends the job (its report names rank 1) in seconds, never hangs; rank 0
    says what failed and keeps the last checkpoint."""
    proc, run, workers = _start_long_run(tmp_path)
    os.kill(workers[1], signal.SIGKILL)
    _, err = proc.communicate(timeout=90)  # the deadline: a hanging job fails here (TimeoutExpired)
    assert proc.returncode != 0
    assert "rank      : 1" in err and "SIGKILL" in err, err[-3000:]
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "failed" and "another rank died" in status["reason"], status
    assert "gannorm: error: rank 0 of 2:" in err
    load_checkpoint(run / "checkpoint.pt")  # the step-0 checkpoint (or a later one) still loads


# ------------------------------------------------------------------------------------------ collectives on ranks
@pytest.mark.slow
def test_sync_batch_norm_and_agreement_check_on_two_ranks(tmp_path):
    """SyncBatchNorm on two ranks = nn.BatchNorm on the concatenated batch: outputs, input gradients, the
    parameters' summed gradients, running statistics (momentum and cumulative); and the bitwise agreement
    check passes for equal states and names the entry that differs by one ulp on rank 1."""
    done = torchrun([str(CHILD), str(tmp_path)], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    parts = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1)]
    cases = {"bn1d": (nn.BatchNorm1d(5), (5,), 1), "bn2d": (nn.BatchNorm2d(3), (3, 4, 4), 2),
             "bn2d_cumulative": (nn.BatchNorm2d(3, momentum=None), (3, 2, 2), 3)}
    for name, (bn, shape, seed) in cases.items():
        assert parts[0][name]["type"] == "SyncBatchNorm"
        gen = torch.Generator().manual_seed(seed)
        x_all = torch.randn(8, *shape, generator=gen) * 3 + 1
        w_all = torch.randn(8, *shape, generator=gen)
        bn.train()
        for step in range(2):
            x = x_all.clone().requires_grad_(True)
            y = bn(x)
            bn.zero_grad()
            ((y * w_all).sum() / 2).backward()
            torch.testing.assert_close(torch.cat([p[name]["outputs"][step] for p in parts]), y.detach())
            torch.testing.assert_close(torch.cat([p[name]["input_grads"][step] for p in parts]), x.grad)
        for p in parts:
            for got, want in zip(p[name]["param_grads"], [bn.weight.grad, bn.bias.grad]):
                torch.testing.assert_close(got, want)
            assert p[name]["state"].keys() == bn.state_dict().keys()
            for key, value in bn.state_dict().items():
                torch.testing.assert_close(p[name]["state"][key], value)
    assert parts[0]["agree_entries"] == 2
    for p in parts:
        assert p["disagree"] is not None and "rank 1 holds a different u than rank 0" in p["disagree"]


# ------------------------------------------------------------------------------------------ in one process
def test_shard_takes_contiguous_rows_of_the_global_batch():
    x = torch.arange(12).view(6, 2)
    assert torch.equal(Ranks(3, 1).shard(x), x[2:4])
    assert Ranks().shard(x) is x
    with pytest.raises(ValueError, match="does not split"):
        Ranks(4, 0).shard(x)


@pytest.mark.parametrize("world", [2, 4])
def test_shard_stream_gives_each_rank_its_rows_of_the_global_penalty_draw(world):
    """A penalty drawing one weight per sample of its shard gets the single process's weights for those rows,
    and the shared stream ends where the single process's does (and stays put if nothing is drawn)."""
    total = 8
    real, fake = torch.randn(total, 3, 4, 4), torch.randn(total, 3, 4, 4)
    ref = torch.Generator().manual_seed(7)
    expected = interpolates(real, fake, ref)
    for rank in range(world):
        ranks, rng = Ranks(world, rank), torch.Generator().manual_seed(7)
        with ranks.shard_stream(rng, total) as gen:
            got = interpolates(ranks.shard(real), ranks.shard(fake), gen)
        assert torch.equal(got, ranks.shard(expected))
        assert torch.equal(rng.get_state(), ref.get_state())
        untouched = torch.Generator().manual_seed(7)
        with ranks.shard_stream(untouched, total):
            pass  # R1/R2 draw nothing
        assert torch.equal(untouched.get_state(), torch.Generator().manual_seed(7).get_state())
    with pytest.raises(RankFailure, match="one uniform per sample"):
        with Ranks(2, 0).shard_stream(torch.Generator().manual_seed(7), total) as gen:
            torch.rand(3, generator=gen)


def test_global_batches_must_split_over_the_ranks(monkeypatch, tmp_path):
    cfg = config_mod.load("ring8", [f"train.out_dir={tmp_path}", "train.batch_size_d=30"])
    check_supported(cfg, 1)
    check_supported(cfg, 2)
    with pytest.raises(ConfigError, match=r"^config key train\.batch_size_d: 30 is the global batch, split over 4 "
                                          r"ranks; it must be a multiple of 4 \(e\.g\. train\.batch_size_d=28\)$"):
        check_supported(cfg, 4)
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(ConfigError, match="multiple of 4"):  # refused before any process group or folder exists
        Trainer(cfg)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("method", ["batch_norm", "msn"])
def test_a_discriminator_with_batch_statistics_is_refused_on_several_ranks(method, tmp_path):
    cfg = config_mod.load("digits", [f"train.out_dir={tmp_path}", f"normalization.method={method}",
                                     "normalization.options={}"])
    check_supported(cfg, 1)
    with pytest.raises(ConfigError, match=f"^config key normalization.method: {method} normalizes D's layers with "
                                          "batch statistics"):
        check_supported(cfg, 2)


def test_ranks_from_the_environment(monkeypatch):
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    assert ranks_from_env() == Ranks()
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert ranks_from_env(30) == Ranks(4, 3, 1, 30.0)
    monkeypatch.setenv("RANK", "4")
    with pytest.raises(GannormError, match="do not fit WORLD_SIZE=4"):
        ranks_from_env()
    monkeypatch.setenv("RANK", "x")
    with pytest.raises(GannormError, match="RANK='x' is not a whole number"):
        ranks_from_env()


def test_disagreement_names_the_first_rank_and_entry():
    same = {"D.u": "a", "G.w": "b"}
    assert disagreement([same, dict(same), dict(same)]) is None
    assert disagreement([same, dict(same), {"D.u": "x", "G.w": "b"}]) == (2, "D.u")
    assert disagreement([same, {"D.u": "a"}]) == (1, "G.w")


def test_sync_batch_norm_keeps_the_state_dict_and_acts_as_batch_norm_alone():
    """Converted layers keep their keys and tensors (checkpoints move between rank counts); unsynced (or in a
    single process) they are nn.BatchNorm exactly."""
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2)))
    before = {k: v for k, v in model.state_dict().items()}
    reference = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    copies = [type(m)(m.num_features) for m in reference]
    sync_batch_norm(model)
    assert [type(m) for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)] == [SyncBatchNorm] * 2
    after = model.state_dict()
    assert after.keys() == before.keys() and all(after[k].data_ptr() == before[k].data_ptr() for k in before)
    x = torch.randn(8, 6)
    torch.testing.assert_close(model[1](x), copies[0](x), rtol=0, atol=0)
    torch.testing.assert_close(model[1].running_mean, copies[0].running_mean, rtol=0, atol=0)
