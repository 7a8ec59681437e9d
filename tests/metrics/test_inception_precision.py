"""The Inception precision (fp32 | bf16) as an evaluation option: it reaches the network, every result and
statistics file records it, bad values are one-line errors, mixed precisions are warned about. The real
extractions use the offline fid-helper network on 4 images; one thread."""
import json

import numpy as np
import pytest
import scipy.linalg
import torch
from torch import nn

import gannorm.metrics.evaluate as ev
from gannorm import config as config_mod
from gannorm.app.evaluation import evaluate_run, precision_warnings, training_protocol
from gannorm.app.training import train
from gannorm.cli import main
from gannorm.data import load_dataset
from gannorm.errors import ConfigError, GannormError
from gannorm.metrics.evaluate import (STATS_PRECISION_KEY, STATS_RESIZE_KEY, EvalOptions, evaluate, inception_backend,
                                      save_inception_statistics, statistics_precision)
from gannorm.metrics.frechet import load_statistics, save_statistics
from gannorm.metrics.inception import INCEPTION_PRECISIONS, FIDInceptionV3
from gannorm.runfolder import RunFolder

pytestmark = pytest.mark.usefixtures("one_thread")


class Ordered(nn.Module):
    """A 'generator' that returns the first ``len(z)`` dataset items, brightened by ``shift`` (clamped)."""

    def __init__(self, data, shift=0.0):
        super().__init__()
        self.data, self.shift = data, shift
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, z):
        return (self.data.get(torch.arange(len(z))) + self.shift).clamp(-1, 1)


class FakeInception(nn.Module):
    """Stands in for the FID Inception: pool3 = the flattened pixels, logits = zeros."""

    def forward(self, x):
        f = x.flatten(1).float()
        return {"pool3": f, "logits_unbiased": torch.zeros(len(x), 1008)}


@pytest.fixture
def spy_loader(monkeypatch):
    """``load_fid_inception`` replaced by a spy that records its keyword arguments."""
    seen = []

    def loader(weights_path=None, **kwargs):
        seen.append(kwargs)
        return FakeInception()
    monkeypatch.setattr(ev, "load_fid_inception", loader)
    return seen


def test_inception_precisions_are_the_networks():
    assert INCEPTION_PRECISIONS == ("fp32", "bf16")
    assert EvalOptions().inception_precision == "fp32" and ev.ExtractorRequest("d", 8).inception_precision == "fp32"


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_the_precision_reaches_the_loader_and_every_result_records_it(spy_loader, precision):
    data = load_dataset("digits", resolution=8)
    _, desc = ev.make_extractor("inception", dataset="digits", resolution=8, inception_backend="pth",
                                inception_precision=precision, progress=False)
    assert desc["precision"] == precision
    result = evaluate(Ordered(data), data, 4, EvalOptions(metrics=["fid", "kid"], num_samples=6, progress=False,
                                                          inception_backend="pth", inception_precision=precision))
    assert [kw["precision"] for kw in spy_loader] == [precision, precision]
    assert result["protocol"]["inception_precision"] == precision
    # the default is fp32, everywhere
    spy_loader.clear()
    evaluate(Ordered(data), data, 4, EvalOptions(metrics=["fid"], num_samples=4, progress=False,
                                                 inception_backend="pth"))
    assert spy_loader[0]["precision"] == "fp32"


def frechet_by_hand(x, y):
    """FD of feature sets x [n, d] and y [m, d] with n, m << d, by ``scipy.linalg.sqrtm`` of an n x n matrix
    (as in test_evaluate.py: the non-zero eigenvalues of S1 S2 are those of M M^T, M = A B^T)."""
    a = (x - x.mean(0)) / np.sqrt(len(x) - 1)
    b = (y - y.mean(0)) / np.sqrt(len(y) - 1)
    m = a @ b.T
    tr_sqrt = np.trace(scipy.linalg.sqrtm(m @ m.T)).real
    return float(np.square(x.mean(0) - y.mean(0)).sum() + np.square(a).sum() + np.square(b).sum() - 2 * tr_sqrt)


def test_a_bf16_fid_through_the_offline_network(monkeypatch):
    """FID with precision bf16 end to end: the built network is in bf16, and the number is the Frechet distance
    of that network's features computed here, which differ from fp32's by rounding only."""
    built = []
    real_helper = ev.fid_inception_from_fid_helper

    def helper(**kwargs):
        built.append(real_helper(**kwargs))
        return built[-1]
    monkeypatch.setattr(ev, "fid_inception_from_fid_helper", helper)
    data = load_dataset("digits", resolution=8)
    options = EvalOptions(metrics=["fid"], num_samples=4, num_real=4, progress=False, inception_backend="fid-helper",
                          inception_precision="bf16")
    result = evaluate(Ordered(data, 0.5), data, 4, options)
    (network,) = built
    assert isinstance(network, FIDInceptionV3) and network.precision == "bf16"
    protocol = result["protocol"]
    assert protocol["inception_precision"] == "bf16" and "fid-helper" in protocol["inception_network"]
    fake_x = Ordered(data, 0.5)(torch.zeros(4, 1))
    real_x = data.get(torch.randperm(len(data), generator=torch.Generator().manual_seed(0))[:4])  # real_subset's
    with torch.no_grad():
        bf16 = [network.features(x).double().numpy() for x in (fake_x, real_x)]
        network.precision = "fp32"
        fp32 = [network.features(x).double().numpy() for x in (fake_x, real_x)]
    expected = frechet_by_hand(*bf16)
    assert result["metrics"]["fid"]["value"] == pytest.approx(expected, rel=1e-5)
    for a, b in zip(bf16, fp32):  # bf16 really ran (not bitwise fp32), and is close to it
        cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
        assert cosine.min() > 0.999 and np.abs(a - b).max() > 0
    fid32 = frechet_by_hand(*fp32)
    assert fid32 != expected and abs(fid32 - expected) < 0.05 * fid32


def test_a_bad_precision_is_a_one_line_error_before_any_work(spy_loader):
    with pytest.raises(ConfigError, match=r"^Inception precision must be one of fp32, bf16, got 'fp16'") as err:
        inception_backend(backend="pth", precision="fp16")
    assert "\n" not in str(err.value) and spy_loader == []  # refused before looking for weights
    data = load_dataset("ring8", n=100)
    for metrics in (["fid"], ["modes"]):  # refused even where no Inception metric would use it
        with pytest.raises(ConfigError, match=r"^EvalOptions\.inception_precision must be one of fp32, bf16, "
                                              r"got 'BF16'"):
            evaluate(Ordered(data), data, 4, EvalOptions(metrics=metrics, num_samples=4, progress=False,
                                                         inception_precision="BF16"))
    with pytest.raises(GannormError, match=r"^--precision must be one of fp32, bf16, got 'half'"):
        evaluate_run("no-such-run", EvalOptions(inception_precision="half"))  # checked before the run is opened
    assert spy_loader == []


def test_an_evaluation_without_inception_ignores_and_does_not_record_the_precision():
    data = load_dataset("ring8", n=300)
    fp32, bf16 = (evaluate(Ordered(data), data, 4, EvalOptions(num_samples=100, progress=False,
                                                               inception_precision=p)) for p in ("fp32", "bf16"))
    assert not any("precision" in k for k in bf16["protocol"])
    assert bf16["metrics"] == fp32["metrics"]


def test_statistics_files_record_the_precision_and_stay_ttur_compatible(tmp_path):
    rng = np.random.default_rng(0)
    mu, sigma = rng.normal(size=5), np.cov(rng.normal(size=(20, 5)), rowvar=False)
    ours, plain = tmp_path / "bf16.npz", tmp_path / "plain.npz"
    save_inception_statistics(ours, mu, sigma, "bf16")
    save_statistics(plain, mu, sigma)
    assert statistics_precision(ours) == "bf16" and statistics_precision(plain) is None
    for path in (ours, plain):
        got = load_statistics(path)
        np.testing.assert_array_equal(got[0], mu)
        np.testing.assert_array_equal(got[1], sigma)
    with np.load(ours) as f:  # how TTUR's fid.py reads a statistics file
        m, s = f["mu"][:], f["sigma"][:]
        assert sorted(f.files) == sorted(["mu", "sigma", STATS_PRECISION_KEY, STATS_RESIZE_KEY])
    np.testing.assert_array_equal(m, mu)
    np.testing.assert_array_equal(s, sigma)
    (tmp_path / "junk.npz").write_bytes(b"not an npz")
    assert statistics_precision(tmp_path / "junk.npz") is None and statistics_precision(tmp_path / "none") is None
    with pytest.raises(ConfigError, match="got 'fp16'"):
        save_inception_statistics(tmp_path / "x.npz", mu, sigma, "fp16")
    assert not (tmp_path / "x.npz").exists()


def test_mixed_precisions_are_warned_about_in_one_line(tmp_path):
    rng = np.random.default_rng(1)
    mu, sigma = rng.normal(size=3), np.eye(3)
    files = {"fp32": tmp_path / "fp32.npz", "bf16": tmp_path / "bf16.npz", None: tmp_path / "ttur.npz"}
    save_inception_statistics(files["fp32"], mu, sigma, "fp32")
    save_inception_statistics(files["bf16"], mu, sigma, "bf16")
    save_statistics(files[None], mu, sigma)

    def warnings(precision, recorded, **kw):
        options = EvalOptions(metrics=kw.pop("metrics", ["fid"]), inception_precision=precision, **kw)
        if "protocol" not in kw:
            options.reference_stats = str(files[recorded])
        return precision_warnings(options, "cifar10")

    assert warnings("bf16", "bf16") == [] and warnings("fp32", "fp32") == [] and warnings("fp32", None) == []
    (line,) = warnings("bf16", "fp32")
    assert line.startswith(f"gannorm: warning: fid compares bf16 Inception features with {files['fp32']}, computed in "
                           "fp32; ") and "gannorm fid-stats --precision bf16" in line and "\n" not in line
    (line,) = warnings("bf16", None)  # a file that records nothing was computed in fp32 (TTUR, older gannorm)
    assert "computed in fp32 (it records no precision)" in line
    (line,) = warnings("fp32", "bf16")
    assert "fid compares fp32 Inception features" in line and "or --precision bf16" in line
    # a per-metric protocol's reference, and the dataset's default metrics when none are named
    (line,) = warnings("bf16", None, protocol={"fid": {"reference": str(files["fp32"])}}, metrics=[])
    assert str(files["fp32"]) in line
    assert warnings("bf16", "fp32", metrics=["kid"]) == []  # no metric compares with the file


def test_fid_stats_records_its_precision(tmp_path, capsys):
    out = tmp_path / "s.npz"
    assert main(["fid-stats", "digits", "--resolution", "8", "-n", "4", "-o", str(out), "--backend", "fid-helper",
                 "--precision", "bf16"]) == 0
    assert "Inception in bf16" in capsys.readouterr().out
    assert statistics_precision(out) == "bf16"
    mu, sigma = load_statistics(out)
    assert mu.shape == (2048,) and sigma.shape == (2048, 2048)


def test_the_training_config_sets_the_precision_of_evaluations_during_training(tmp_path):
    cfg = config_mod.load(None, ["train.eval_inception_precision=bf16"])
    assert config_mod.evaluation_options(cfg).inception_precision == "bf16"
    assert config_mod.evaluation_options(config_mod.load(None, [])).inception_precision == "fp32"
    with pytest.raises(ConfigError, match=r"^config key train\.eval_inception_precision: 'fp16' is not one of "
                                          r"fp32, bf16$"):
        config_mod.load(None, ["train.eval_inception_precision=fp16"])
    # gannorm eval by the run's protocol keeps the caller's extractor settings, the precision among them
    assert training_protocol(EvalOptions(), cfg).inception_precision == "fp32"
    assert training_protocol(EvalOptions(inception_precision="bf16"), cfg).inception_precision == "bf16"
    # a run evaluates in it and eval.jsonl records it (FID on 4 images through the offline network)
    result = train(config_mod.load(None, [
        "data.name=digits", "data.resolution=8", "model.arch=cnn", "model.width=0.125", "model.z_dim=16",
        "normalization.method=sn", "normalization.options={}", "train.batch_size_d=8", "train.batch_size_g=8",
        "train.progress=false", "train.tensorboard=false", "train.steps=1", "train.eval_every=1",
        "train.eval_metrics=[fid]", "train.eval_protocol={fid: {num_samples: 4, num_real: 4}}",
        "train.eval_inception_precision=bf16", f"train.out_dir={tmp_path}", "train.run_name=r"]))
    (record,) = RunFolder.open(result.run_dir).read_eval()
    assert record.protocol["inception_precision"] == "bf16"
    assert json.loads((result.run_dir / "eval.jsonl").read_text().splitlines()[0])["protocol"][
        "inception_precision"] == "bf16"
