"""init_weights: the variances of each scheme against the closed forms."""
import math

import pytest
import torch
from torch import nn

import gannorm


def big():
    return nn.Sequential(nn.Conv2d(64, 128, 3), nn.Linear(512, 256), nn.ConvTranspose2d(128, 32, 4, 2, 1))


@pytest.mark.parametrize("distribution", ["normal", "uniform"])
@pytest.mark.parametrize("scheme", ["lecun", "xavier", "kaiming"])
def test_variance_matches_the_scheme(scheme, distribution):
    options = {"slope": 0.1} if scheme == "kaiming" else {}
    model = gannorm.init_weights(big(), scheme, distribution=distribution, **options)
    for m in model:
        fan_in, fan_out = gannorm.fans(m)
        expected = {"lecun": 1 / fan_in, "xavier": 2 / (fan_in + fan_out),
                    "kaiming": 2 / (1 + 0.01) / fan_in}[scheme]
        var = float(m.weight.var())
        n = m.weight.numel()
        assert var == pytest.approx(expected, rel=6 / math.sqrt(n))
        assert float(m.bias.abs().max()) == 0.0


def test_fans():
    assert gannorm.fans(nn.Conv2d(64, 128, 3)) == (64 * 9, 128 * 9)
    assert gannorm.fans(nn.Conv2d(64, 128, 3, groups=4)) == (16 * 9, 32 * 9)
    assert gannorm.fans(nn.Linear(5, 7)) == (5, 7)
    assert gannorm.fans(nn.ConvTranspose2d(128, 32, 4)) == (128 * 16, 32 * 16)


def test_official_normal_and_truncated_normal():
    model = gannorm.init_weights(big(), "normal")
    assert float(model[0].weight.std()) == pytest.approx(0.02, rel=0.02)
    model = gannorm.init_weights(big(), "trunc_normal")
    w = model[0].weight
    assert float(w.abs().max()) <= 0.04
    # the std of N(0, s) truncated at +-2s is s * 0.8796
    assert float(w.std()) == pytest.approx(0.02 * 0.8796, rel=0.02)


def test_initialises_the_raw_weight_of_normalized_layers_and_refreshes_vectors():
    model = gannorm.normalize(big(), "sn", warmup=100)
    gannorm.init_weights(model, "lecun")
    raw = model[0].parametrizations.weight.original.detach()
    assert float(raw.var()) == pytest.approx(1 / (64 * 9), rel=0.05)
    sigma = float(torch.linalg.svdvals(raw.reshape(128, -1))[0])
    assert gannorm.sigmas(model)["0/sigma"] == pytest.approx(sigma, rel=1e-3)


def test_bad_scheme():
    with pytest.raises(ValueError, match="unknown init scheme 'he'; known: lecun"):
        gannorm.init_weights(big(), "he")
