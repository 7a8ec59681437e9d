"""normalize(), the registry, sigmas(), gamma methods."""
import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

import gannorm
from gannorm.errors import OptionError


def small_d():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.LeakyReLU(0.1), nn.Conv2d(8, 8, 4, 2, 1),
                         nn.LeakyReLU(0.1), nn.Flatten(), nn.Linear(8 * 4 * 4, 1))


def test_registry_lists_the_methods_of_the_foundation():
    for name in ["none", "sn", "ssn", "bsn", "bssn", "sn_gamma_shared", "sn_gamma_layer", "strict_sn"]:
        assert name in gannorm.METHODS


def test_unknown_method_lists_the_known_ones():
    with pytest.raises(KeyError) as err:
        gannorm.normalize(small_d(), "spectral")
    msg = str(err.value)
    assert "unknown normalization 'spectral'" in msg and "bssn" in msg and "strict_sn" in msg


def test_unknown_and_missing_options():
    with pytest.raises(OptionError, match=r"normalization 'sn': unknown option\(s\) scale; allowed: .*n_power"):
        gannorm.normalize(small_d(), "sn", scale=2.0)
    with pytest.raises(OptionError, match=r"normalization 'bssn': requires option\(s\) scale"):
        gannorm.normalize(small_d(), "bssn")


def test_every_layer_is_normalized_and_none_does_nothing():
    d = gannorm.normalize(small_d(), "bssn", scale=1.5)
    layers = [m for m in d.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert all(parametrize.is_parametrized(m, "weight") for m in layers)
    assert isinstance(d[0].parametrizations.weight[0], gannorm.BidirectionalSpectralNorm)
    assert isinstance(d[5].parametrizations.weight[0], gannorm.SpectralNorm)  # the linear layer
    assert d[5].parametrizations.weight[0].scale == 1.5
    plain = gannorm.normalize(small_d(), "none")
    assert not any(parametrize.is_parametrized(m) for m in plain.modules())


def test_exclude_and_double_normalization():
    d = gannorm.normalize(small_d(), "sn", exclude=["5"])
    assert not parametrize.is_parametrized(d[5])
    with pytest.raises(ValueError, match="already normalized; call gannorm.remove_normalization"):
        gannorm.normalize(d, "bsn")


def test_sigmas_keys_and_values():
    d = gannorm.normalize(small_d(), "bsn", warmup=300)
    s = gannorm.sigmas(d)
    assert set(s) == {"0/sigma", "0/sigma1", "0/sigma2", "2/sigma", "2/sigma1", "2/sigma2", "5/sigma"}
    assert s["0/sigma"] == pytest.approx((s["0/sigma1"] + s["0/sigma2"]) / 2)
    w = d[5].parametrizations.weight.original.detach()
    assert s["5/sigma"] == pytest.approx(float(w.norm()), rel=1e-5)


@pytest.mark.parametrize("method", ["sn_gamma_shared", "sn_gamma_layer"])
def test_gamma_multiplies_weight_and_bias(method):
    d = gannorm.normalize(small_d(), method, warmup=300)
    gammas = {id(p.gamma): p.gamma for p in d.modules() if isinstance(p, gannorm.GammaScale)}
    assert len(gammas) == (1 if method == "sn_gamma_shared" else 3)
    assert all(float(g.detach()) == 1.0 for g in gammas.values())
    with torch.no_grad():
        for i, g in enumerate(gammas.values()):
            g.fill_(2.0 + i)
    d.eval()
    conv = d[2]
    g = float(conv.parametrizations.weight[1].gamma)
    raw_w = conv.parametrizations.weight.original.detach()
    raw_b = conv.parametrizations.bias.original.detach()
    sigma = float(torch.linalg.svdvals(raw_w.reshape(8, -1))[0])
    torch.testing.assert_close(conv.weight, g * raw_w / sigma, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(conv.bias, g * raw_b)
    # gamma is trained: it gets a gradient and is one of D's parameters
    d.train()
    d(torch.randn(2, 3, 8, 8)).sum().backward()
    assert all(g.grad is not None for g in gammas.values())
    assert len(list(d.parameters())) == 6 + len(gammas)
    assert gannorm.sigmas(d)["2/gamma"] == g
