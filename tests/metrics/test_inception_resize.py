"""The resize modes of the Inception input (legacy_tensorflow | clean | pytorch_bilinear): each against an
independent computation, the option reaches the network, every result and statistics file records it, bad
names are one-line errors, mismatched reference statistics are warned about. One thread."""
import json
import warnings

import numpy as np
import pytest
import torch
from cleanfid.resize import (
    make_resizer,  # clean-fid 0.1.35 (test extra, --no-deps); this module needs no torchvision
)
from PIL import Image
from torch import nn

import gannorm.metrics.evaluate as ev
from gannorm import config as config_mod
from gannorm.app.evaluation import evaluate_run, precision_warnings, training_protocol
from gannorm.app.training import train
from gannorm.cli import main
from gannorm.data import load_dataset
from gannorm.errors import ConfigError, GannormError
from gannorm.metrics.evaluate import (
    EvalOptions,
    check_evaluation,
    evaluate,
    resize_mismatch,
    save_inception_statistics,
    statistics_resize,
)
from gannorm.metrics.frechet import save_statistics
from gannorm.metrics.inception import FIDInceptionV3, preprocess, resize_bilinear_tf1
from gannorm.metrics.resize import DEFAULT_RESIZE, RESIZE_MODES
from gannorm.registry import UnknownNameError
from gannorm.runfolder import RunFolder

pytestmark = pytest.mark.usefixtures("one_thread")

MODES = ("legacy_tensorflow", "clean", "pytorch_bilinear")


def _images(n=2, h=32, w=24, seed=0):
    return torch.randint(0, 256, (n, 3, h, w), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def test_the_registry_lists_the_three_modes_with_descriptions():
    assert RESIZE_MODES.names() == list(MODES) and DEFAULT_RESIZE == "legacy_tensorflow"
    assert all(e.description for e in RESIZE_MODES.entries())
    assert [RESIZE_MODES.get(m).differentiable for m in MODES] == [True, False, True]


def test_legacy_tensorflow_is_the_default_and_unchanged():
    x = _images()
    default = preprocess(x)
    assert torch.equal(default, preprocess(x, resize="legacy_tensorflow"))
    assert torch.equal(default, (resize_bilinear_tf1(x.float(), 299) - 128) / 128)
    assert FIDInceptionV3(with_fc=False).resize == "legacy_tensorflow"


@pytest.mark.parametrize("h,w", [(32, 24), (512, 400)])  # upsampling, and shrinking (PIL antialiases)
def test_clean_is_pil_bicubic_on_float_images_per_channel(h, w):
    x = _images(h=h, w=w)
    got = preprocess(x, resize="clean")
    ref = np.empty((2, 3, 299, 299), dtype=np.float32)
    for n in range(2):
        for c in range(3):
            img = Image.fromarray(x[n, c].numpy().astype(np.float32), mode="F").resize((299, 299), Image.BICUBIC)
            ref[n, c] = np.clip(np.asarray(img), 0, 255)
    np.testing.assert_array_equal(got.numpy(), (ref - 128) / 128)


def test_clean_matches_clean_fids_own_resizer():
    x = _images(h=40, w=40, seed=1)
    resize = make_resizer("PIL", False, "bicubic", (299, 299))
    ref = np.stack([resize(img.permute(1, 2, 0).numpy()).transpose(2, 0, 1) for img in x])
    np.testing.assert_array_equal(preprocess(x, resize="clean").numpy(), (ref - 128) / 128)


def test_clean_antialiases_when_it_shrinks():
    """A one-pixel checkerboard shrunk 640 -> 299: PIL's widened bicubic averages it to about grey; the TF1 and
    PyTorch bilinear resizes (no antialiasing) interpolate between neighbours and keep strong aliasing."""
    board = ((torch.arange(640)[:, None] + torch.arange(640)[None, :]) % 2 * 255).to(torch.uint8)
    x = board.expand(1, 3, 640, 640)
    clean = preprocess(x, resize="clean") * 128 + 128
    assert (clean[..., 10:-10, 10:-10] - 127.5).abs().max() < 20
    for mode in ("legacy_tensorflow", "pytorch_bilinear"):
        sampled = preprocess(x, resize=mode) * 128 + 128
        assert (sampled - 127.5).abs().max() > 60


def _half_pixel_bilinear(a, out):
    """The half-pixel bilinear resize, written out: src = (i + 0.5) * in / out - 0.5 clamped at 0 (the coordinates
    in float32, as PyTorch computes them for float32 images; the interpolation in float64)."""
    def axis(n_in):
        f = np.float32
        src = np.maximum((np.arange(out, dtype=f) + f(0.5)) * (f(n_in) / f(out)) - f(0.5), f(0.0))
        lo = np.floor(src).astype(int)
        return lo, np.minimum(lo + 1, n_in - 1), (src - lo).astype(np.float64)
    ly, hy, wy = axis(a.shape[-2])
    lx, hx, wx = axis(a.shape[-1])
    top = a[..., ly, :][..., lx] * (1 - wx) + a[..., ly, :][..., hx] * wx
    bottom = a[..., hy, :][..., lx] * (1 - wx) + a[..., hy, :][..., hx] * wx
    return top * (1 - wy)[:, None] + bottom * wy[:, None]


@pytest.mark.parametrize("h,w", [(32, 24), (400, 350)])
def test_pytorch_bilinear_is_the_half_pixel_formula_without_antialias(h, w):
    x = _images(h=h, w=w, seed=2)
    ref = _half_pixel_bilinear(x.double().numpy(), 299)
    np.testing.assert_allclose(preprocess(x, resize="pytorch_bilinear").double().numpy(), (ref - 128) / 128,
                               atol=2e-6, rtol=0)
    # and it is not the TF1 resize (which has no half-pixel centres)
    assert (preprocess(x, resize="pytorch_bilinear") - preprocess(x)).abs().max() > 0.01


def test_the_modes_differ_and_clean_is_not_differentiable():
    x = _images(seed=3)
    a, b, c = (preprocess(x, resize=m) for m in MODES)
    assert not torch.equal(a, b) and not torch.equal(a, c) and not torch.equal(b, c)
    g = (torch.rand(1, 3, 16, 16) * 2 - 1).requires_grad_()
    preprocess(g, quantize=False, resize="pytorch_bilinear").sum().backward()
    assert g.grad is not None and g.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="not differentiable"):
        preprocess(g, quantize=False, resize="clean")


def test_an_unknown_mode_is_a_one_line_error():
    with pytest.raises(UnknownNameError, match=r"^unknown resize mode 'bicubic'; known: legacy_tensorflow, clean, "
                                               r"pytorch_bilinear$"):
        preprocess(_images(), resize="bicubic")
    with pytest.raises(UnknownNameError):
        FIDInceptionV3(with_fc=False, resize="area")
    with pytest.raises(ConfigError, match=r"^--resize must be one of legacy_tensorflow, clean, pytorch_bilinear, got "
                                          r"'tf'"):
        ev.check_resize("tf", "--resize")


def test_the_network_uses_its_resize_mode():
    torch.manual_seed(0)
    net = FIDInceptionV3(with_fc=False, chunk=None).eval()
    x = _images(n=1, seed=4)
    with torch.no_grad():
        for mode in MODES:
            net.resize = mode
            assert torch.allclose(net.features(x), net.pool3_from_preprocessed(preprocess(x, resize=mode)),
                                  rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------ evaluations record the mode
class Ordered(nn.Module):
    """A 'generator' that returns the first ``len(z)`` dataset items."""

    def __init__(self, data):
        super().__init__()
        self.data = data
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, z):
        return self.data.get(torch.arange(len(z)))


class FakeInception(nn.Module):
    def forward(self, x):
        return {"pool3": x.flatten(1).float(), "logits_unbiased": torch.zeros(len(x), 1008)}


@pytest.fixture
def spy_loader(monkeypatch):
    seen = []

    def loader(weights_path=None, **kwargs):
        seen.append(kwargs)
        return FakeInception()
    monkeypatch.setattr(ev, "load_fid_inception", loader)
    return seen


@pytest.mark.parametrize("mode", MODES)
def test_an_evaluation_passes_and_records_its_resize_mode(spy_loader, mode):
    data = load_dataset("digits", resolution=8)
    out = evaluate(Ordered(data), data, 4, EvalOptions(metrics=("fid", "kid"), num_samples=20, progress=False,
                                                       inception_resize=mode))
    assert spy_loader[-1]["resize"] == mode
    assert out["protocol"]["inception_resize"] == mode and mode in out["protocol"]["inception_preprocess"]
    assert set(out["metrics"]["kid"]) == {"value"}  # 20 vs 20: one distinct KID subset, no std


def test_kid_reports_a_spread_only_when_its_subsets_differ(spy_loader):
    """The evaluation's KID (subset size min(1000, counts)) against the unbiased MMD^2 written out with the
    polynomial kernel: one subset of everything (no std), then 20 generated vs 40 real (a std)."""
    data = load_dataset("digits", resolution=8)
    whole = evaluate(Ordered(data), data, 4, EvalOptions(metrics=("kid",), num_samples=20, progress=False))
    assert set(whole["metrics"]["kid"]) == {"value"} and whole["protocol"]["metrics"]["kid"]["subset_size"] == 20
    fake = data.get(torch.arange(20))
    real = data.get(ev._subset_indices(len(data), 20, 0))
    x, y = (t.flatten(1).float().double().numpy() for t in (fake, real))  # FakeInception's features

    def k(a, b):  # KID's cubic polynomial kernel
        return (a @ b.T / a.shape[1] + 1) ** 3

    m = 20
    mmd2 = ((k(x, x).sum() - np.trace(k(x, x))) / (m * (m - 1)) + (k(y, y).sum() - np.trace(k(y, y))) / (m * (m - 1))
            - 2 * k(x, y).mean())
    assert whole["metrics"]["kid"]["value"] == pytest.approx(mmd2, rel=1e-9)
    more = evaluate(Ordered(data), data, 4, EvalOptions(metrics=("kid",), num_samples=20, num_real=40,
                                                        progress=False))
    assert more["metrics"]["kid"]["std"] > 0


def test_bad_resize_in_eval_options_is_refused(spy_loader):
    data = load_dataset("digits", resolution=8)
    with pytest.raises(ConfigError, match="^EvalOptions.inception_resize must be one of"):
        evaluate(Ordered(data), data, 4, EvalOptions(metrics=("fid",), num_samples=4, progress=False,
                                                     inception_resize="nearest"))


def test_statistics_files_record_the_resize_and_old_files_read_as_legacy(tmp_path):
    mu, sigma = np.zeros(3), np.eye(3)
    clean, old = tmp_path / "clean.npz", tmp_path / "old.npz"
    save_inception_statistics(clean, mu, sigma, "fp32", "clean")
    save_statistics(old, mu, sigma)
    assert statistics_resize(clean) == "clean" and statistics_resize(old) is None
    assert resize_mismatch("fid", clean, "clean") is None and resize_mismatch("fid", old, DEFAULT_RESIZE) is None
    line = resize_mismatch("fid", clean, "legacy_tensorflow")
    assert line.startswith(f"gannorm: warning: fid compares legacy_tensorflow-resized Inception features with {clean}, "
                           "computed with resize clean;") and "--resize clean" in line and "\n" not in line
    line = resize_mismatch("fid", old, "pytorch_bilinear")
    assert "computed with resize legacy_tensorflow (it records none)" in line
    with pytest.raises(ConfigError):
        save_inception_statistics(tmp_path / "x.npz", mu, sigma, "fp32", "bicubic")
    assert not (tmp_path / "x.npz").exists()


def test_a_mismatched_reference_is_warned_about(tmp_path, spy_loader):
    mu, sigma = np.zeros(192), np.eye(192)
    ref = tmp_path / "clean.npz"
    save_inception_statistics(ref, mu, sigma, "fp32", "clean")
    options = EvalOptions(metrics=["fid"], reference_stats=str(ref), num_samples=4, progress=False)
    (line,) = precision_warnings(options, "digits")  # gannorm eval prints these lines on stderr
    assert "computed with resize clean" in line
    assert precision_warnings(EvalOptions(metrics=["fid"], reference_stats=str(ref), inception_resize="clean"),
                              "digits") == []
    data = load_dataset("digits", resolution=8)
    with pytest.warns(UserWarning, match="fid compares legacy_tensorflow-resized Inception features"):
        check_evaluation(data, options)  # what a training run checks before its first step
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_evaluation(data, EvalOptions(metrics=["fid"], reference_stats=str(ref), inception_resize="clean",
                                           num_samples=4, progress=False))


def test_the_config_key_and_the_training_protocol(tmp_path):
    cfg = config_mod.load(None, ["train.eval_inception_resize=clean"])
    assert config_mod.evaluation_options(cfg).inception_resize == "clean"
    assert config_mod.evaluation_options(config_mod.load(None, [])).inception_resize == DEFAULT_RESIZE
    with pytest.raises(ConfigError, match=r"^config key train\.eval_inception_resize: 'bicubic' is not one of "
                                          r"legacy_tensorflow, clean, pytorch_bilinear$"):
        config_mod.validate(config_mod.load(None, ["train.eval_inception_resize=bicubic"]))
    # gannorm eval by the run's protocol keeps the caller's resize
    assert training_protocol(EvalOptions(inception_resize="pytorch_bilinear"), cfg).inception_resize == \
        "pytorch_bilinear"


@pytest.mark.slow  # about 30 s: a training run, gannorm eval and fid-stats through the real network
def test_a_run_gannorm_eval_and_fid_stats_record_the_resize(tmp_path, capsys):
    """A training run evaluated in clean, gannorm eval of it in pytorch_bilinear, fid-stats in clean: every record
    says so (FID on 4 images of 8 px through the offline fid-helper network)."""
    result = train(config_mod.load(None, [
        "data.name=digits", "data.resolution=8", "model.arch=cnn", "model.width=0.125", "model.z_dim=16",
        "normalization.method=sn", "normalization.options={}", "train.batch_size_d=8", "train.batch_size_g=8",
        "train.progress=false", "train.tensorboard=false", "train.steps=1", "train.eval_every=1",
        "train.eval_metrics=[fid]", "train.eval_protocol={fid: {num_samples: 4, num_real: 4}}",
        "train.eval_inception_resize=clean", f"train.out_dir={tmp_path}", "train.run_name=r"]))
    (record,) = RunFolder.open(result.run_dir).read_eval()
    assert record.protocol["inception_resize"] == "clean"
    assert main(["eval", str(result.run_dir), "--metric", "fid", "--num-samples", "4", "--backend", "fid-helper",
                 "--resize", "pytorch_bilinear", "-o", str(tmp_path / "e.json")]) == 0
    assert "pytorch_bilinear resize" in capsys.readouterr().out
    saved = json.loads((tmp_path / "e.json").read_text())
    assert {r["protocol"]["inception_resize"] for r in saved["results"].values()} == {"pytorch_bilinear"}
    out = tmp_path / "s.npz"
    assert main(["fid-stats", "digits", "--resolution", "8", "-n", "4", "-o", str(out), "--backend", "fid-helper",
                 "--resize", "clean"]) == 0
    assert "clean resize" in capsys.readouterr().out and statistics_resize(out) == "clean"
    with pytest.raises(SystemExit) as stop:
        main(["fid-stats", "digits", "-o", str(tmp_path / "t.npz"), "--resize", "area"])
    assert stop.value.code == 2 and "invalid choice: 'area'" in capsys.readouterr().err


def test_evaluate_run_refuses_a_bad_resize(tmp_path):
    with pytest.raises(GannormError, match="^--resize must be one of"):
        evaluate_run(tmp_path, EvalOptions(inception_resize="box"))
