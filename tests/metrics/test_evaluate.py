"""The evaluation layer: generators -> extractors -> registered metrics, the eval command, the trainer hook."""
import json
import urllib.error

import numpy as np
import pytest
import scipy.linalg
import torch
from torch import nn
from conftest import TINY_DIGITS

from gannorm.app.training import train
from gannorm.cli import main
from gannorm.data import load_dataset
from gannorm.metrics.evaluate import METRICS, EvalOptions, evaluate, flat
from gannorm.metrics.inception_fid_helper import fid_inception_from_fid_helper


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


TINY = [*TINY_DIGITS, "train.steps=2", "train.ema_decay=0.5"]


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
    result = train("ring8", [f"train.out_dir={tmp_path}", "train.steps=4", "train.eval_every=2",
                             "train.eval_num_samples=200", "train.progress=false", "train.tensorboard=false",
                             "data.options={n: 1000}"])
    rows = [json.loads(line) for line in (result.run_dir / "eval.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4] and "modes" in rows[0]["metrics"]
    logged = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert any("eval/modes_modes_covered" in r for r in logged)


class Ordered(nn.Module):
    """A 'generator' that returns the first ``len(z)`` dataset items, brightened by ``shift`` (clamped to [-1, 1])."""

    def __init__(self, data, shift=0.0):
        super().__init__()
        self.data, self.shift = data, shift
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, z):
        return (self.data.get(torch.arange(len(z))) + self.shift).clamp(-1, 1)


def frechet_by_hand(x, y):
    """FD of feature sets x [n, d] and y [m, d] with n, m << d, by ``scipy.linalg.sqrtm`` of an n x n matrix.

    With A, B the centred features over sqrt(n - 1), S1 = A^T A and S2 = B^T B; the non-zero eigenvalues of
    S1 S2 are those of M M^T with M = A B^T, so tr sqrt(S1 S2) = tr sqrtm(M M^T).
    """
    a = (x - x.mean(0)) / np.sqrt(len(x) - 1)
    b = (y - y.mean(0)) / np.sqrt(len(y) - 1)
    m = a @ b.T
    tr_sqrt = np.trace(scipy.linalg.sqrtm(m @ m.T)).real
    return float(np.square(x.mean(0) - y.mean(0)).sum() + np.square(a).sum() + np.square(b).sum() - 2 * tr_sqrt)


def test_fid_stats_and_fid_against_them_with_the_offline_network(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "a.npy", rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8))
    stats = tmp_path / "a.npz"
    assert main(["fid-stats", "npy", "--root", str(tmp_path / "a.npy"), "-o", str(stats), "--backend",
                 "fid-helper"]) == 0
    data = load_dataset("npy", tmp_path / "a.npy")
    # the features, independently: the fid-helper network called directly
    network = fid_inception_from_fid_helper()
    with torch.no_grad():
        real_f = network.features(data.get(torch.arange(4))).double().numpy()
        shifted_f = network.features(Ordered(data, 0.5)(torch.zeros(4, 1))).double().numpy()
    with np.load(stats) as f:
        np.testing.assert_allclose(f["mu"], real_f.mean(0), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(f["sigma"], np.cov(real_f, rowvar=False), rtol=1e-4, atol=1e-6)
    spread = float(np.cov(real_f, rowvar=False).trace())
    options = dict(metrics=["fid"], num_samples=4, num_real=4, progress=False, inception_backend="fid-helper")
    # the data against its own statistics: FD 0
    same = evaluate(Ordered(data), data, 4, EvalOptions(**options, reference_stats=str(stats)))
    assert "fid-helper" in same["protocol"]["inception_network"]
    assert same["protocol"]["metrics"]["fid"]["reference"].endswith("a.npz")  # the file replaces the real images:
    assert "num_real" not in same["protocol"]["metrics"]["fid"] and same["protocol"]["num_real"] == 0  # none read
    assert same["metrics"]["fid"]["value"] == pytest.approx(0.0, abs=1e-6 * spread)
    # brightened images against the same 4 real ones: the FD computed by hand on the same features
    shifted = evaluate(Ordered(data, 0.5), data, 4, EvalOptions(**options))
    expected = frechet_by_hand(shifted_f, real_f)
    assert expected > 0.01 * spread
    assert shifted["metrics"]["fid"]["value"] == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="metric is needs logits, which the inception backend in use does not"):
        evaluate(Lookup(data), data, 4, EvalOptions(metrics=["is"], num_samples=4, progress=False,
                                                    inception_backend="fid-helper", protocol={"is": {"splits": 2}}))


def test_missing_inception_weights_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.delenv("GANNORM_INCEPTION_WEIGHTS", raising=False)

    def offline(url, dst, *args, **kwargs):  # online or not, the download fails (as in test_inception.py)
        raise urllib.error.URLError("[Errno -2] Name or service not known")
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    from gannorm.metrics.evaluate import inception_backend
    with pytest.raises(FileNotFoundError, match="pt_inception-2015-12-05-6726825d.pth"):
        inception_backend(backend="pth")
    with pytest.raises(FileNotFoundError, match="download failed"):
        inception_backend(backend="pth", download=True)


@pytest.mark.parametrize("download", [False, True])
def test_download_is_threaded_to_the_inception_loader_and_off_by_default(monkeypatch, download):
    import gannorm.metrics.evaluate as ev
    from gannorm.metrics.inception import InceptionWeightsNotFoundError
    seen = []

    def loader(weights_path=None, **kwargs):
        seen.append(kwargs.get("download"))
        raise InceptionWeightsNotFoundError("not here")
    monkeypatch.setattr(ev, "load_fid_inception", loader)
    kwargs = {"download": True} if download else {}
    with pytest.raises(InceptionWeightsNotFoundError):
        ev.make_extractor("inception", dataset="npy", resolution=32, inception_backend="pth", **kwargs)
    data = load_dataset("ring8", n=50)
    with pytest.raises(InceptionWeightsNotFoundError):
        evaluate(Lookup(data), data, 4, EvalOptions(metrics=["fid"], num_samples=4, progress=False,
                                                    inception_backend="pth", **kwargs))
    assert seen == [download, download]
    assert EvalOptions().download is False


def test_metric_registry_refuses_a_metric_whose_needs_its_extractor_cannot_provide():
    from gannorm.metrics.evaluate import EXTRACTORS, MetricSpec, check_metric
    from gannorm.registry import Registry
    metrics = Registry("metric", check=check_metric)  # a fresh registry with METRICS' check
    with pytest.raises(ValueError, match="metric 'pis' needs probs, which extractor 'points' does not provide"):
        metrics.register("pis", MetricSpec("points", lambda fake, real: {}, frozenset({"probs"})))
    with pytest.raises(KeyError, match="unknown feature extractor 'pixels'"):
        metrics.register("raw", MetricSpec("pixels", lambda fake, real: {}))
    metrics.register("cis2", MetricSpec("classifier", lambda fake, real: {}, frozenset({"probs"})))
    assert "cis2" in metrics and "cis2" not in METRICS
    for entry in METRICS.entries():  # every built-in metric passes the same check
        assert set(entry.obj.needs) <= EXTRACTORS.get(entry.obj.extractor).provides, entry.name
    needs = {e.name: set(e.obj.needs) for e in METRICS.entries()}
    assert needs["is"] == {"logits"} and needs["cis"] == {"probs"}  # IS takes a softmax of chosen logit columns


def test_evaluate_refuses_a_need_the_built_backend_lacks_before_extracting(monkeypatch):
    import gannorm.metrics.evaluate as ev
    calls = []

    def no_probs(request):
        return ev.FeatureExtractor(lambda x: calls.append(len(x)) or {"features": x.flatten(1).double().numpy()},
                                   {"network": "features only"}, frozenset({"features"}), "this one has no logits")

    real_get = ev.EXTRACTORS.get
    fake_spec = ev.ExtractorSpec(no_probs, frozenset({"features", "probs"}))
    monkeypatch.setattr(ev.EXTRACTORS, "get", lambda name: fake_spec if name == "classifier" else real_get(name))
    data = load_dataset("ring8", n=50)
    with pytest.raises(ValueError, match="metric cis needs class probabilities, .* \\(this one has no logits\\)"):
        evaluate(Lookup(data), data, 4, EvalOptions(metrics=["cis"], num_samples=10, progress=False))
    assert calls == []  # refused before any extraction
