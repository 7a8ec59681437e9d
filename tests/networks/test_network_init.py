"""The official initialisations, checked against their closed forms (docs/networks.md)."""
import math

import pytest
import torch
from torch import nn

from gannorm.networks import build_discriminator, build_generator

@pytest.fixture(autouse=True)
def _no_grad():
    with torch.no_grad():
        yield


# TF truncated_normal redraws outside +-2 std: the std of N(0, 1) truncated to [-2, 2]
_PHI2 = math.exp(-2.0) / math.sqrt(2 * math.pi)
TRUNC_STD = math.sqrt(1 - 2 * 2 * _PHI2 / math.erf(2 / math.sqrt(2)))


def test_truncated_std_factor():
    assert TRUNC_STD == pytest.approx(0.8796, abs=1e-4)


def _std_close(w, expected):
    w, n = w.detach(), w.numel()
    assert float(w.std()) == pytest.approx(expected, rel=5 / math.sqrt(2 * n))


def test_cnn_discriminator():
    D = build_discriminator("cnn", (3, 32, 32))
    convs = [m for m in D.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 7
    for m in convs:
        _std_close(m.weight, 0.02 * TRUNC_STD)
        assert float(m.weight.abs().max()) <= 0.04
        assert float(m.bias.abs().max()) == 0.0
    all_w = torch.cat([m.weight.detach().flatten() for m in convs])
    assert float(all_w.std()) == pytest.approx(0.02 * TRUNC_STD, rel=0.01)
    _std_close(D.linear.weight, 0.02)
    assert float(D.linear.weight.abs().max()) > 0.04  # plain normal, not truncated
    assert float(D.linear.bias.abs().max()) == 0.0
    assert all(m.negative_slope == 0.1 for m in D.modules() if isinstance(m, nn.LeakyReLU))


def test_cnn_generator():
    G = build_generator("cnn", (3, 32, 32))
    layers = [m for m in G.modules() if isinstance(m, (nn.Linear, nn.ConvTranspose2d))]
    assert len(layers) == 5
    for m in layers:
        _std_close(m.weight, 0.02)
        assert float(m.bias.abs().max()) == 0.0
    assert float(G.linear.weight.abs().max()) > 0.04
    assert isinstance(G.bn0, nn.BatchNorm1d) and G.bn0.num_features == 8192  # flat BN, as in the TF code
    bns = [m for m in G.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert len(bns) == 4
    for bn in bns:
        assert bn.momentum == 0.1 and bn.eps == 1e-5 and bn.affine
        assert torch.equal(bn.weight, torch.ones_like(bn.weight)) and float(bn.bias.abs().max()) == 0.0


def _expected_var(m, scale):
    """variance_scaling(scale, fan_avg): Var = scale / ((fan_in + fan_out) / 2)."""
    if isinstance(m, nn.Conv2d):
        k = m.kernel_size[0] * m.kernel_size[1]
        fan_in, fan_out = m.in_channels * k, m.out_channels * k
    else:
        fan_in, fan_out = m.in_features, m.out_features
    return scale / ((fan_in + fan_out) / 2)


def _check_uniform(w, var):
    w, n = w.detach(), w.numel()
    bound = math.sqrt(3 * var)
    assert float(w.abs().max()) <= bound * (1 + 1e-6)
    assert float(w.abs().max()) >= 0.9 * bound  # P(fail) = 0.9 ** n, n >= 128 here
    assert float(w.pow(2).mean()) == pytest.approx(var, rel=6 * math.sqrt(0.8 / n))  # Var(x^2) = 0.8 var^2


def _resnet_scales(model):
    """(module, scale): 2 for residual 3x3 convs in blocks, 1 for 1x1 shortcuts, linears and G's last conv."""
    out = []
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            if name.startswith("blocks."):
                out.append((name, m, 2.0 if m.kernel_size == (3, 3) else 1.0))
                assert (m.kernel_size == (3, 3)) == (name.endswith(".c1") or name.endswith(".c2"))
            else:
                assert name == "conv"
                out.append((name, m, 1.0))
        elif isinstance(m, nn.Linear):
            out.append((name, m, 1.0))
    return out


@pytest.mark.parametrize("res,width", [(32, 1.0), (48, 0.5), (128, 0.25)])
def test_resnet_variance_scaling(res, width):
    for model in (build_generator("resnet", (3, res, res), width=width),
                  build_discriminator("resnet", (3, res, res), width=width)):
        layers = _resnet_scales(model)
        assert any(s == 2.0 for *_, s in layers) and any(s == 1.0 for *_, s in layers)
        for name, m, scale in layers:
            _check_uniform(m.weight, _expected_var(m, scale))
            if m.bias is not None:
                assert float(m.bias.abs().max()) == 0.0, name
        for bn in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):
            assert bn.momentum == 0.1 and bn.eps == 1e-5
            assert torch.equal(bn.weight, torch.ones_like(bn.weight))


def test_resnet_example_numbers():
    """Two values by hand: a 128->128 3x3 conv (fan_avg 1152) and the 128->1 linear (fan_avg 64.5)."""
    D = build_discriminator("resnet", (3, 32, 32))
    c = D.blocks[2].c1
    assert _expected_var(c, 2.0) == pytest.approx(2 * 2 / (128 * 9 + 128 * 9))
    assert float(c.weight.detach().var()) == pytest.approx(2 / 1152, rel=0.02)
    assert float(D.linear.weight.abs().max()) <= math.sqrt(3 / 64.5)


def test_mlp_lecun():
    for model in (build_generator("mlp", (2,), hidden=256), build_discriminator("mlp", (2,), hidden=256)):
        for m in model.modules():
            if isinstance(m, nn.Linear):
                n = m.weight.numel()
                var = float(m.weight.detach().pow(2).mean())
                assert var == pytest.approx(1 / m.in_features, rel=6 * math.sqrt(2 / n))
                assert float(m.bias.abs().max()) == 0.0


@pytest.mark.parametrize("arch,shape", [("cnn", (3, 16, 16)), ("resnet", (3, 16, 16)), ("mlp", (2,))])
def test_seeded_builds_are_identical(arch, shape):
    states = []
    for _ in range(2):
        torch.manual_seed(3)
        G = build_generator(arch, shape, width=1 / 8)
        D = build_discriminator(arch, shape, width=1 / 8, normalization="sn")
        states.append({**G.state_dict(), **{"D." + k: v for k, v in D.state_dict().items()}})
    assert states[0].keys() == states[1].keys()
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
