"""precision, recall, density, coverage as registered metrics: on the features of the dataset's Frechet
distance, one extraction and one k-NN computation for all four, their protocol setting ``nearest_k``, the
higher-is-better direction sweeps rank by, and ``gannorm eval --metric precision,recall,density,coverage``."""
from __future__ import annotations

import json

import joblib
import prdc as prdc_package
import pytest
import torch
from torch import nn

import gannorm.metrics.evaluate as ev
from gannorm import config as C
from gannorm.app.sweep import expand, load_sweep
from gannorm.cli import main
from gannorm.data import load_dataset
from gannorm.errors import ConfigError
from gannorm.metrics.evaluate import (METRICS, EvalOptions, evaluate, generate, make_extractor, metric_dataset_problem,
                                      metric_protocols, metrics_for_dataset, on_dataset, real_subset)
from gannorm.metrics.protocol import ProtocolError

pytestmark = pytest.mark.usefixtures("one_thread")
KEYS = ("precision", "recall", "density", "coverage")


class NoisyLookup(nn.Module):
    """A 'generator' returning dataset items chosen by z, plus ``noise`` times uniform noise (clamped)."""

    def __init__(self, data, noise=0.0):
        super().__init__()
        self.data, self.noise = data, noise
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, z):
        x = self.data.get((z[:, 0].abs() * 1e6).long() % len(self.data))
        return (x + self.noise * (torch.rand(x.shape, generator=torch.Generator().manual_seed(1)) * 2 - 1)).clamp(-1, 1)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def reference(real, fake, k):
    with joblib.parallel_config(backend="threading"):
        return {key: float(v) for key, v in prdc_package.compute_prdc(real, fake, k).items()}


def test_registered_higher_is_better_on_the_frechet_features_of_image_datasets():
    for key in KEYS:
        spec = METRICS.get(key)
        assert not spec.lower_is_better and spec.settings["nearest_k"].default == 5 and spec.value_of == key
    assert on_dataset(METRICS.get("coverage"), "digits").extractor == "classifier" == METRICS.get("cfd").extractor
    assert on_dataset(METRICS.get("coverage"), "cifar10").extractor == "inception" == METRICS.get("fid").extractor
    assert on_dataset(METRICS.get("fid"), "digits") is METRICS.get("fid")  # a plain extractor stays
    assert set(KEYS) <= set(metrics_for_dataset("digits")) and set(KEYS) <= set(metrics_for_dataset("cifar10"))
    assert "2-D points" in metric_dataset_problem("precision", "ring8")


def test_evaluation_equals_the_package_on_the_classifier_features_with_one_extraction_and_one_computation(
        cache, monkeypatch):
    monkeypatch.setenv("GANNORM_CACHE", str(cache))
    data = load_dataset("digits", resolution=8)
    gen = NoisyLookup(data, noise=1.0)
    calls, extractions = [], []
    real_prdc, real_extract = ev.prdc, ev.extract_shard
    monkeypatch.setattr(ev, "prdc", lambda *a, **kw: calls.append(kw) or real_prdc(*a, **kw))
    monkeypatch.setattr(ev, "extract_shard", lambda *a, **kw: extractions.append(1) or real_extract(*a, **kw))
    opts = EvalOptions(metrics=[*KEYS, "cfd"], num_samples=300, num_real=250, progress=False)
    result = evaluate(gen, data, 4, opts)
    assert len(calls) == 1 and calls[0]["nearest_k"] == 5  # one k-NN computation for the four
    assert len(extractions) == 2  # the generated and the real rows, once, shared with cfd
    # the same rows through the classifier, by hand, into the authors' package
    extract, _ = make_extractor("classifier", dataset="digits", resolution=8, progress=False)
    fake = extract(generate(gen, 300, 4, seed=1000))["features"]
    real = extract(real_subset(data, 250, seed=0)[0])["features"]
    expected = reference(real, fake, 5)
    for key in KEYS:
        assert result["metrics"][key] == {"value": pytest.approx(expected[key], abs=1e-12)}, key
        assert result["protocol"]["metrics"][key] == {"num_generated": 300, "num_real": 250, "nearest_k": 5,
                                                      "features": "classifier"}
    assert all(0.05 < expected[key] < 0.98 for key in KEYS)  # noisy digits: no number is trivially 0 or 1
    # nearest_k per metric: precision with k = 3 is a second computation, the others share the first
    calls.clear()
    result = evaluate(gen, data, 4, EvalOptions(metrics=list(KEYS), num_samples=300, num_real=250, progress=False,
                                                protocol={"precision": {"nearest_k": 3}}))
    assert sorted(c["nearest_k"] for c in calls) == [3, 5]
    assert result["metrics"]["precision"]["value"] == pytest.approx(reference(real, fake, 3)["precision"], abs=1e-12)
    assert result["metrics"]["recall"]["value"] == pytest.approx(expected["recall"], abs=1e-12)


class Repeat(nn.Module):
    """A 'generator' that returns ``image`` (uniform noise if None) for every z."""

    def __init__(self, image=None):
        super().__init__()
        self.image = image
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, z):
        if self.image is None:
            return torch.rand((len(z), *self.shape), generator=torch.Generator().manual_seed(len(z))) * 2 - 1
        return self.image.expand(len(z), *self.image.shape[1:])


def test_real_samples_score_high_a_collapsed_generator_has_no_recall_and_noise_little(cache, monkeypatch):
    monkeypatch.setenv("GANNORM_CACHE", str(cache))
    data = load_dataset("digits", resolution=8)
    opts = EvalOptions(metrics=list(KEYS), num_samples=300, progress=False)
    real = evaluate(NoisyLookup(data), data, 4, opts)["metrics"]
    assert real["precision"]["value"] > 0.8 and real["recall"]["value"] > 0.8 and real["coverage"]["value"] > 0.8
    assert 0.7 < real["density"]["value"] < 1.3
    # mode collapse onto the first real image of the evaluation: every sample lies in that image's own ball
    # (precision 1), the generated manifold is one point of radius 0 (recall 0), few real balls hold it
    collapsed = evaluate(Repeat(real_subset(data, 1, seed=0)[0]), data, 4, opts)["metrics"]
    assert collapsed["precision"]["value"] == 1.0 and collapsed["recall"]["value"] == 0.0
    assert collapsed["coverage"]["value"] < 0.05
    assert collapsed["density"]["value"] == pytest.approx(collapsed["coverage"]["value"] * 300 / 5, abs=1e-12)
    noise_gen = Repeat()
    noise_gen.shape = data.shape
    noise = evaluate(noise_gen, data, 4, opts)["metrics"]
    assert all(noise[key]["value"] < 0.1 for key in ("recall", "density", "coverage"))


@pytest.mark.parametrize("protocol, num_samples, match", [
    ({"recall": {"nearest_k": 0}}, 100, r"^where\.recall\.nearest_k: must be an integer >= 1, got 0$"),
    ({"density": {"nearest_k": 10}}, 10, r"^where\.density\.nearest_k: 10 needs more than 10 samples in each set, "
                                         r"but the smaller of num_samples and num_real is 10; lower nearest_k"),
    ({"coverage": {"nearest_k": 5, "num_real": 5}}, 100, r"^where\.coverage\.nearest_k: 5 needs more than 5"),
])
def test_bad_nearest_k_is_a_one_line_protocol_error(protocol, num_samples, match):
    with pytest.raises(ProtocolError, match=match):
        metric_protocols(list(KEYS), EvalOptions(num_samples=num_samples, protocol=protocol), 1000, where="where")


def test_config_and_sweep_take_them_higher_is_better(tmp_path):
    with pytest.raises(ConfigError, match=r"config key train\.eval_protocol\.precision\.nearest_k: must be an integer"):
        C.validate(C.load("digits", ["train.eval_protocol.precision.nearest_k=0"]))
    C.validate(C.load("digits", ["train.eval_metrics=[cfd, precision, recall]", "train.best_metric=recall"]))
    path = tmp_path / "cov.yaml"
    path.write_text(json.dumps({"base": "digits", "seeds": 1, "metric": "coverage"}))
    spec = load_sweep(str(path))
    assert spec.lower_is_better is False
    assert any(o.startswith("train.eval_metrics=") and "coverage" in o for o in expand(spec)[0].overrides)
    path.write_text(json.dumps({"base": "ring8", "seeds": 1, "metric": "precision"}))
    with pytest.raises(ConfigError, match="metric precision cannot be computed on dataset 'ring8'"):
        load_sweep(str(path))


TINY = ["data.resolution=8", "model.width=0.125", "train.batch_size_d=8", "train.batch_size_g=8",
        "train.progress=false", "train.tensorboard=false", "train.steps=2", "train.ema_decay=0.5"]


def test_eval_command_on_a_digits_run(tmp_path, cache, monkeypatch, capsys):
    monkeypatch.setenv("GANNORM_CACHE", str(cache))
    assert main(["train", "digits", *TINY, f"train.out_dir={tmp_path}", "train.run_name=r"]) == 0
    assert main(["eval", str(tmp_path / "r"), "--num-samples", "200", "--metric", "precision,recall,density,coverage",
                 "-o", str(tmp_path / "e.json")]) == 0
    out = capsys.readouterr().out
    assert "precision" in out and "coverage" in out and "nearest_k 5" in out
    result = json.loads((tmp_path / "e.json").read_text())
    for kind in ("ema", "raw"):
        metrics = result["results"][kind]["metrics"]
        assert set(metrics) == set(KEYS)
        assert all(0.0 <= metrics[k]["value"] <= 1.0 for k in ("precision", "recall", "coverage"))
        assert result["results"][kind]["protocol"]["metrics"]["density"]["features"] == "classifier"
