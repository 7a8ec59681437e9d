"""Sharded evaluation under torchrun: ``gannorm eval`` and ``gannorm fid-stats`` on two ranks (gloo, one thread
each) give the numbers of one process, and so does an evaluation during training whose callback runs on both
ranks.

Tolerance: every number within 1e-6 relative (1e-12 absolute) of the single process's. On the CPU the ranks
generate the very batches one process generates and each network gives a sample the same features whatever
batch it is in, so the numbers agree bit for bit here; the tolerance leaves room for backends whose kernels
depend on the batch size. The comparisons would fail on a wrong shard or order: the run samples in train mode
(BatchNorm with the statistics of each generator batch of 256, so a sample depends on the batch it is drawn
in), 600 samples split 512 + 88 and 300 real ones 160 + 140, and the classifier score (10 consecutive
splits) and KID (seeded row subsets) depend on the order of the rows; precision, recall, density and coverage
(computed once, on rank 0, from the gathered features) depend on every row being there once.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import DIGITS_CNN

from gannorm.app.evaluation import evaluate_run, fid_stats
from gannorm.app.training import train
from gannorm.cli import main
from gannorm.metrics.classifier import get_classifier
from gannorm.metrics.evaluate import EvalOptions
from gannorm.runfolder import RunFolder

pytestmark = pytest.mark.usefixtures("one_thread")

CHILD = Path(__file__).with_name("_sharded_eval_child.py")
TINY = [*DIGITS_CNN, "train.batch_size_d=8", "train.batch_size_g=8", "train.steps=2", "train.log_every=1",
        "train.sample_every=1000", "train.checkpoint_every=1000", "train.eval_every=0", "train.progress=false",
        "train.tensorboard=false", "diagnostics.every=0", "train.ema_decay=0.5", "train.sample_mode=train",
        "train.threads=1"]
RTOL, ATOL = 1e-6, 1e-12


def torchrun(args: list[str], cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    """``python -m torch.distributed.run --standalone --nproc_per_node=2 ARGS`` with one thread per rank."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *args]
    done = subprocess.run(cmd, cwd=cwd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def assert_same_numbers(two: dict, one: dict) -> None:
    assert set(two) == set(one) and one
    for name, values in one.items():
        assert set(two[name]) == set(values), name
        for key, value in values.items():
            assert two[name][key] == pytest.approx(value, rel=RTOL, abs=ATOL), (name, key)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A 2-step digits run (8 px, G with BatchNorm sampling in train mode, EMA) and the cached 8 px classifier."""
    out = tmp_path_factory.mktemp("runs")
    get_classifier("digits", 8)  # trained once into the cache if missing, before any rank reads it
    assert train(None, [*TINY, f"train.out_dir={out}", "train.run_name=tiny"]).status == "finished"
    return out / "tiny"


@pytest.mark.slow
def test_eval_on_two_ranks_equals_one_process(tiny_run, tmp_path):
    metrics = ["cfd", "cis", "ckid", "precision", "recall", "density", "coverage"]  # the default ones and k-NN
    args = ["--num-samples", "600", "--num-real", "300", "--batch-size", "40", "--metric", ",".join(metrics)]
    one = evaluate_run(tiny_run, EvalOptions(metrics=metrics, num_samples=600, num_real=300, batch_size=40,
                                             progress=False), tmp_path / "one.json")
    done = torchrun(["-m", "gannorm", "eval", str(tiny_run), *args, "-o", str(tmp_path / "two.json")], tmp_path)
    two = json.loads((tmp_path / "two.json").read_text())
    assert sorted(p.name for p in tmp_path.glob("*.json")) == ["one.json", "two.json"]
    assert done.stdout.count("ema generator (600 generated vs 300 real") == 1  # rank 0 alone prints
    assert two["step"] == one["step"] == 2 and set(two["results"]) == set(one["results"]) == {"ema", "raw"}
    for kind in ("ema", "raw"):
        a, b = two["results"][kind], one["results"][kind]
        assert set(b["metrics"]) == set(metrics)
        assert_same_numbers(a["metrics"], b["metrics"])
        assert a["protocol"].pop("ranks") == 2 and "ranks" not in b["protocol"]
        for p in (a["protocol"], b["protocol"]):
            p.pop("seconds")
        assert a["protocol"] == b["protocol"]  # the same counts, real split, z seed, per-metric settings
    assert one["results"]["ema"]["metrics"]["cfd"]["value"] != one["results"]["raw"]["metrics"]["cfd"]["value"]


@pytest.mark.slow
def test_fid_stats_on_two_ranks_equals_one_process(tmp_path):
    """8 images in Inception batches of 3 (the offline fid-helper network): rank 0 gets 6, rank 1 gets 2."""
    one = fid_stats("digits", tmp_path / "one.npz", resolution=8, num=8, batch_size=3, backend="fid-helper",
                    progress=False)
    done = torchrun(["-m", "gannorm", "fid-stats", "digits", "--resolution", "8", "-n", "8", "--batch-size", "3",
                     "--backend", "fid-helper", "-o", str(tmp_path / "two.npz")], tmp_path)
    assert done.stdout.count("wrote mu and sigma of 8 images") == 1
    with np.load(tmp_path / "one.npz") as a, np.load(tmp_path / "two.npz") as b:
        assert a["mu"].shape == (2048,) and a["sigma"].shape == (2048, 2048)
        np.testing.assert_allclose(b["mu"], a["mu"], rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(b["sigma"], a["sigma"], rtol=RTOL, atol=ATOL * 1e3)
    assert one["num"] == 8


@pytest.mark.slow
def test_evaluation_during_training_sharded_over_two_ranks(tiny_run, tmp_path):
    """The Evaluation callback on both ranks: eval.jsonl (written once, by rank 0) holds the numbers one process
    computes for the same checkpoint by the run's own protocol."""
    torchrun([str(CHILD), str(tmp_path), "two", *TINY, "train.eval_every=2", "train.eval_num_samples=600"], tmp_path)
    folder = RunFolder.open(tmp_path / "two")
    (record,) = folder.read_eval()
    assert record.step == 2 and record.generator == "ema" and record.protocol["ranks"] == 2
    again = evaluate_run(folder.path, EvalOptions(progress=False), tmp_path / "again.json",
                         use_training_protocol=True)["results"]["ema"]
    assert again["protocol"]["num_generated"] == 600 and "ranks" not in again["protocol"]
    assert_same_numbers(record.metrics, again["metrics"])


@pytest.mark.parametrize("args, message", [
    (["--device", "tpu"], "gannorm: error: --device 'tpu' is not a device (auto, cpu, cuda or cuda:N)"),
    (["--device", "meta"], "gannorm: error: --device 'meta' is not a device evaluation runs on "
                           "(auto, cpu, cuda or cuda:N)"),
    (["--dist-timeout", "0"], "gannorm: error: --dist-timeout must be a number of seconds > 0, got 0.0"),
])
def test_bad_device_or_timeout_is_one_line(tmp_path, capsys, args, message):
    for command in (["eval", str(tmp_path / "no-run")], ["fid-stats", "digits", "-o", str(tmp_path / "s.npz")]):
        assert main([*command, *args]) == 2
        assert capsys.readouterr().err == message + "\n"
    assert not list(tmp_path.iterdir())
