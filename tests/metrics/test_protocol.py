"""Per-metric evaluation protocols: counts and settings per metric, the IS logits option, the protocol records."""
import numpy as np
import pytest
import torch
from torch import nn

import gannorm.metrics.evaluate as ev
from gannorm.data import load_dataset
from gannorm.metrics.classifier import get_classifier
from gannorm.metrics.evaluate import METRICS, EvalOptions, check_evaluation, evaluate, generate, metric_protocols
from gannorm.metrics.frechet import feature_statistics, frechet_distance, save_statistics
from gannorm.metrics.inception_score import inception_score
from gannorm.metrics.protocol import COUNT_SETTINGS, MetricProtocol, ProtocolError


class Lookup(nn.Module):
    """A 'generator' that returns dataset items chosen by z (so its samples are real data)."""

    def __init__(self, data):
        super().__init__()
        self.data = data
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, z):
        return self.data.get((z[:, 0].abs() * 1e6).long() % len(self.data))


# ------------------------------------------------------------------------------------------ resolution
def test_defaults_fill_every_setting():
    plans = metric_protocols(["fid", "is", "kid"], EvalOptions(num_samples=300), dataset_size=1000)
    assert plans["fid"] == MetricProtocol(300, 300, {"reference": None})
    assert plans["is"] == MetricProtocol(300, None, {"splits": 10, "logits": 1008})  # IS reads no real images
    assert plans["kid"] == MetricProtocol(300, 300, {"subsets": 100, "subset_size": None})
    assert plans["is"].to_json() == {"num_generated": 300, "splits": 10, "logits": 1008}


def test_given_settings_counts_and_the_dataset_cap():
    options = EvalOptions(num_samples=1000, num_real=800, protocol={
        "is": {"num_samples": 50000, "splits": 5, "logits": 1000},
        "fid": {"num_samples": 10000, "num_real": 5000},
        "kid": {"num_real": "all"}})
    plans = metric_protocols(["is", "fid", "kid"], options, dataset_size=4000)
    assert plans["is"] == MetricProtocol(50000, None, {"splits": 5, "logits": 1000})
    assert (plans["fid"].num_samples, plans["fid"].num_real) == (10000, 4000)  # at most the dataset
    assert (plans["kid"].num_samples, plans["kid"].num_real) == (1000, 4000)  # all: every item
    default_real = metric_protocols(["fid"], EvalOptions(num_samples=1000, num_real=800), dataset_size=4000)
    assert default_real["fid"].num_real == 800  # the evaluation's num_real when the metric names none


def test_a_reference_file_replaces_the_real_images(tmp_path):
    stats = tmp_path / "s.npz"
    save_statistics(stats, np.zeros(3), np.eye(3))
    via_option = metric_protocols(["fid"], EvalOptions(num_samples=100, reference_stats=str(stats)), 1000)
    assert via_option["fid"] == MetricProtocol(100, None, {"reference": str(stats)})
    # a preset's num_real and a reference given on top of it go together: the reference wins
    both = EvalOptions(num_samples=100, protocol={"fid": {"num_real": "all", "reference": str(stats)}})
    assert metric_protocols(["fid"], both, 1000)["fid"].num_real is None


WHERE = "config key train.eval_protocol"
BAD = [
    ({"fidd": {}}, r"^config key train\.eval_protocol: 'fidd' is not a metric; known: fid, is, kid"),
    ({"kid": {"subsets": 0}}, r"^config key train\.eval_protocol\.kid\.subsets: must be an integer >= 1, got 0"),
    ({"is": 3}, r"^config key train\.eval_protocol\.is: expected a mapping of settings \(num_samples, num_real, "
                r"splits, logits\), got 3"),
    ({"is": {"split": 3}}, r"^config key train\.eval_protocol\.is: 'split' is not a setting of is \(allowed: "),
    ({"is": {"splits": 0}}, r"^config key train\.eval_protocol\.is\.splits: must be an integer >= 1, got 0"),
    ({"is": {"splits": True}}, r"\.is\.splits: must be an integer >= 1, got True"),
    ({"is": {"logits": 999}}, r"^config key train\.eval_protocol\.is\.logits: must be 1008 or 1000, got 999"),
    ({"is": {"num_samples": 1}}, r"\.is\.num_samples: must be an integer >= 2, got 1"),
    ({"fid": {"num_real": "most"}}, r"\.fid\.num_real: must be an integer >= 2 or all, got 'most'"),
    ({"is": {"num_real": 5000}}, r"^config key train\.eval_protocol\.is\.num_real: is reads no real images; drop"),
    ({"is": {"num_samples": 100, "splits": 101}}, r"\.is\.splits: 101 splits need at least 101 generated samples, "
                                                  r"but num_samples is 100; lower splits or raise num_samples"),
    ({"fid": {"reference": "missing.npz"}}, r"\.fid\.reference: no statistics file missing\.npz; write it with "
                                            r"'gannorm fid-stats DATASET -o missing\.npz'"),
    ({"fid": {"reference": ""}}, r"\.fid\.reference: must be a path to a statistics file"),
]


@pytest.mark.parametrize("protocol,message", BAD)
def test_a_bad_protocol_is_a_one_line_error_naming_its_key(protocol, message):
    with pytest.raises(ProtocolError, match=message) as err:
        metric_protocols(["fid", "is"], EvalOptions(num_samples=1000, protocol=protocol), where=WHERE)
    assert "\n" not in str(err.value)


def test_a_protocol_for_a_metric_not_evaluated_is_checked_and_left_out():
    options = EvalOptions(num_samples=100, protocol={"is": {"num_samples": 50000, "logits": 1000}})
    assert set(metric_protocols(["fid"], options)) == {"fid"}  # a preset's IS settings when only FID is evaluated
    options.protocol["is"]["logits"] = 1001
    with pytest.raises(ProtocolError, match=r"^EvalOptions\.protocol\.is\.logits: must be 1008 or 1000, got 1001"):
        metric_protocols(["fid"], options)


def test_kid_subset_size_must_fit_the_counts():
    with pytest.raises(ProtocolError, match=r"\.kid\.subset_size: 600 is more than the samples it draws from \(500"):
        metric_protocols(["kid"], EvalOptions(num_samples=1000, protocol={"kid": {"num_real": 500,
                                                                                  "subset_size": 600}}))
    metric_protocols(["kid"], EvalOptions(num_samples=1000, protocol={"kid": {"num_real": 500, "subset_size": 500}}))


def test_every_metric_takes_the_counts_and_none_redeclares_them():
    for entry in METRICS.entries():
        assert not set(entry.obj.settings) & set(COUNT_SETTINGS), entry.name
        assert all(s.valid(s.default) for s in entry.obj.settings.values() if s.default is not None), entry.name
    with pytest.raises(ValueError, match="declares num_samples, which every metric already takes"):
        ev.check_metric("x", ev.MetricSpec("points", lambda f, r: {}, frozenset({"points"}),
                                           settings={"num_samples": COUNT_SETTINGS["num_samples"]}))


# ------------------------------------------------------------------------------------------ evaluation
@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def test_each_metric_reads_its_own_counts_and_records_them(cache, monkeypatch):
    """cfd on the first 300 generated vs the first 200 real, cis on 500 generated in 5 splits: checked against
    the classifier's features computed here from the same samples."""
    monkeypatch.setenv("GANNORM_CACHE", str(cache))
    data = load_dataset("digits", resolution=16)
    options = EvalOptions(metrics=["cfd", "cis"], num_samples=100, seed=3, progress=False,
                          protocol={"cfd": {"num_samples": 300, "num_real": 200}, "cis": {"num_samples": 500,
                                                                                         "splits": 5}})
    g = Lookup(data)
    result = evaluate(g, data, 4, options)
    p = result["protocol"]
    assert (p["num_generated"], p["num_real"]) == (500, 200)  # one draw and one real subset serve both
    assert p["metrics"]["cfd"] == {"num_generated": 300, "num_real": 200}
    assert p["metrics"]["cis"] == {"num_generated": 500, "splits": 5}
    # independently: the same z stream and permutation, the classifier called directly
    clf = get_classifier("digits", 16)
    fake = generate(g, 500, 4, seed=3 + 1000)
    idx = torch.randperm(len(data), generator=torch.Generator().manual_seed(3))[:200]
    with torch.no_grad():
        f_fake, p_fake = clf.features_and_probs(fake)
        f_real, _ = clf.features_and_probs(data.get(idx))
    fd = frechet_distance(*feature_statistics(f_fake[:300].double().numpy()),
                          *feature_statistics(f_real.double().numpy()))
    assert result["metrics"]["cfd"]["value"] == pytest.approx(fd, rel=1e-6)
    mean, std = inception_score(p_fake.double().numpy(), splits=5)
    assert result["metrics"]["cis"]["value"] == pytest.approx(mean, rel=1e-9)
    assert result["metrics"]["cis"]["std"] == pytest.approx(std, rel=1e-9, abs=1e-12)


class Ordered(nn.Module):
    """A 'generator' that returns the first ``len(z)`` items of a dataset."""

    def __init__(self, data):
        super().__init__()
        self.data = data
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, z):
        return self.data.get(torch.arange(len(z)))


def fixed_logits_extractor(weights: torch.Tensor):
    """An 'inception' extractor whose 1008 logits are a fixed linear map of the samples."""
    def factory(request):
        def extract(x):
            return {"logits": (x.double() @ weights).numpy(), "features": x.double().numpy()}
        return ev.FeatureExtractor(extract, {"network": "fixed logits"}, frozenset({"features", "logits"}))
    return ev.ExtractorSpec(factory, frozenset({"features", "logits"}))


def is_by_hand(logits: np.ndarray, k: int, splits: int) -> float:
    """The Inception Score from the softmax over the first ``k`` logits, written out with plain loops."""
    scores = []
    n = len(logits)
    for i in range(splits):
        rows = logits[i * n // splits:(i + 1) * n // splits, :k]
        e = np.exp(rows - rows.max(axis=1, keepdims=True))
        p = e / e.sum(axis=1, keepdims=True)
        py = p.mean(axis=0)
        kl = [sum(pj * (np.log(pj) - np.log(qj)) for pj, qj in zip(row, py) if pj > 0) for row in p]
        scores.append(np.exp(np.mean(kl)))
    return float(np.mean(scores))


def test_is_on_the_first_1000_logits_differs_from_1008_and_matches_a_hand_computation(monkeypatch):
    data = load_dataset("ring8", n=200)
    weights = torch.randn(2, 1008, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 3
    weights[:, 1000:] += 4.0  # the 8 extra classes carry real mass, as they can in the Inception network
    real_get = ev.EXTRACTORS.get
    spec = fixed_logits_extractor(weights)
    monkeypatch.setattr(ev.EXTRACTORS, "get", lambda name: spec if name == "inception" else real_get(name))
    scores = {}
    for k in (1008, 1000):
        options = EvalOptions(metrics=["is"], num_samples=120, progress=False,
                              protocol={"is": {"splits": 4, "logits": k}})
        result = evaluate(Ordered(data), data, 2, options)
        assert result["protocol"]["metrics"]["is"] == {"num_generated": 120, "splits": 4, "logits": k}
        scores[k] = result["metrics"]["is"]["value"]
        logits = (data.get(torch.arange(120)).double() @ weights).numpy()
        assert scores[k] == pytest.approx(is_by_hand(logits, k, 4), rel=1e-9)
    assert abs(scores[1000] - scores[1008]) > 0.01 * scores[1008]


def test_softmax_of_first_refuses_too_few_columns():
    with pytest.raises(ValueError, match=r"logits must be \[N, >= 1000\], got shape \(3, 10\)"):
        ev.softmax_of_first(np.zeros((3, 10)), 1000)


def test_check_evaluation_reads_the_reference_file_before_any_sample(tmp_path):
    data = load_dataset("ring8", n=100)
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not an npz")
    options = EvalOptions(metrics=["fid"], num_samples=10, progress=False, protocol={"fid": {"reference": str(bad)}})
    with pytest.raises(ProtocolError, match=r"^config key train\.eval_protocol\.fid\.reference: ") as err:
        check_evaluation(data, options, where=WHERE)
    assert "\n" not in str(err.value)
    assert set(check_evaluation(data, EvalOptions(metrics=["modes"], num_samples=10, progress=False))) == {"modes"}


# ------------------------------------------------------------------------------------------ named protocols
def test_named_protocols_give_the_papers_counts():
    from gannorm.metrics.evaluate import named_protocol_options
    from gannorm.metrics.protocol import ALL, EVAL_PROTOCOLS

    assert {"sngan_10k_5k", "train_50k", "test_10k", "bssn_10k_5k"} <= set(EVAL_PROTOCOLS.names())
    sngan = named_protocol_options(EvalOptions(seed=4, batch_size=7), "sngan_10k_5k")
    assert sngan.metrics == ("fid", "is") and (sngan.seed, sngan.batch_size) == (4, 7)
    plans = metric_protocols(sngan.metrics, sngan, dataset_size=50000)
    assert plans["fid"] == MetricProtocol(5000, 10000, {"reference": None})  # 5k samples vs 10k real images
    assert plans["is"] == MetricProtocol(5000, None, {"splits": 10, "logits": 1008})
    bssn = named_protocol_options(EvalOptions(), "bssn_10k_5k")
    plans = metric_protocols(bssn.metrics, bssn, dataset_size=50000)
    assert plans["fid"] == MetricProtocol(10000, 5000, {"reference": None})
    assert plans["is"] == MetricProtocol(50000, None, {"splits": 10, "logits": 1000})
    full = named_protocol_options(EvalOptions(metrics=("fid",)), "train_50k")
    assert full.metrics == ("fid",) and full.protocol == {"fid": {"num_samples": 50000, "num_real": ALL}}
    assert metric_protocols(["fid"], full, dataset_size=50000)["fid"].num_real == 50000  # the whole training set
    for entry in EVAL_PROTOCOLS.entries():
        record = entry.obj.to_json(entry.name)
        assert record["name"] == entry.name and record["paper"] and record["extractor"] == "inception"
        assert record["resize"] == ("pytorch_bilinear" if entry.name == "train_50k_pytorch" else "legacy_tensorflow")


def test_named_protocol_errors(tmp_path):
    from gannorm.errors import ConfigError
    from gannorm.metrics.evaluate import named_protocol_options
    from gannorm.metrics.protocol import EVAL_PROTOCOLS, NamedProtocol

    with pytest.raises(ConfigError, match="protocol sngan_10k_5k defines fid, is, not kid"):
        named_protocol_options(EvalOptions(metrics=("fid", "kid")), "sngan_10k_5k")
    with pytest.raises(ConfigError, match="compares with the test split.*--reference FILE"):
        named_protocol_options(EvalOptions(), "test_10k")
    stats = tmp_path / "test.npz"
    save_statistics(stats, np.zeros(3), np.eye(3))
    test = named_protocol_options(EvalOptions(reference_stats=str(stats)), "test_10k")
    assert metric_protocols(["fid"], test, 50000)["fid"] == MetricProtocol(10000, None, {"reference": str(stats)})
    with pytest.raises(Exception, match="unknown evaluation protocol 'nope'; known: sngan_10k_5k"):
        named_protocol_options(EvalOptions(), "nope")
    for bad in (NamedProtocol("p", "val", "subset", 10, 5), NamedProtocol("p", "train", "subset", 10, 5, resize="x"),
                NamedProtocol("p", "train", "statistics", 10, 5), NamedProtocol("p", "train", "subset", 10, 5,
                                                                               settings={"kid": {}})):
        with pytest.raises(ValueError):
            EVAL_PROTOCOLS.register("bad", bad)
