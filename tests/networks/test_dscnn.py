"""The depthwise-separable SNGAN CNN discriminator: structure, forward/backward, normalizations."""
import pytest
import torch
from torch import nn

import gannorm
from gannorm.networks.dscnn import DSCNNDiscriminator
from gannorm.networks.sngan_cnn import SNGANCNNDiscriminator
from gannorm.normalizations.depthwise import DepthwiseSeparableSpectralNorm, depthwise_sigma, is_depthwise
from gannorm.normalizations.spectral import SpectralNorm


def test_structure_mirrors_the_cnn():
    D = DSCNNDiscriminator(32, 3, width=0.125)
    ref = [m for m in SNGANCNNDiscriminator(32, 3, width=0.125).features if isinstance(m, nn.Conv2d)]
    convs = [m for m in D.features if isinstance(m, nn.Conv2d)]
    assert len(convs) == 1 + 2 * (len(ref) - 1)
    assert convs[0].groups == 1 and convs[0].in_channels == 3 and convs[0].kernel_size == (3, 3)
    for r, d, p in zip(ref[1:], convs[1::2], convs[2::2]):
        assert is_depthwise(d) and d.in_channels == d.out_channels == r.in_channels
        assert (d.kernel_size, d.stride, d.padding) == (r.kernel_size, r.stride, r.padding)
        assert p.kernel_size == (1, 1) and (p.in_channels, p.out_channels) == (r.in_channels, r.out_channels)
    mods = list(D.features)
    for i, m in enumerate(mods):  # LeakyReLU after the first conv and every pointwise conv only
        if isinstance(m, nn.Conv2d):
            assert isinstance(mods[i + 1], nn.LeakyReLU) != is_depthwise(m)
    assert D.linear.in_features == 4 * 4 * ref[-1].out_channels


@pytest.mark.parametrize("norm", ["none", "sn", "dssn"])
@pytest.mark.parametrize("channels", [3, 1])
def test_forward_backward(norm, channels):
    D = DSCNNDiscriminator(32, channels, width=0.125)
    gannorm.normalize(D, norm, **({"input_shape": (channels, 32, 32)} if norm == "dssn" else {}))
    x = torch.randn(4, channels, 32, 32, requires_grad=True)
    out = D(x)
    assert out.shape == (4, 1)
    out.sum().backward()
    assert x.grad.shape == x.shape
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in D.parameters())


def test_dssn_layers():
    D = gannorm.normalize(DSCNNDiscriminator(32, 3, width=0.125), "dssn", input_shape=(3, 32, 32))
    sizes = [32, 16, 16, 8, 8, 4]  # input size of each depthwise conv
    dws = [m for m in D.features if isinstance(m, nn.Conv2d) and is_depthwise(m)]
    assert len(dws) == len(sizes)
    for m, n in zip(dws, sizes):
        p = m.parametrizations.weight[0]
        assert isinstance(p, DepthwiseSeparableSpectralNorm) and p.input_size == (n, n) and p.fft_size == (n + 2, n + 2)
        assert float(depthwise_sigma(m.weight.detach(), m.in_channels, p.fft_size)) == pytest.approx(1.0, rel=1e-5)
    others = [m for m in D.modules() if isinstance(m, (nn.Conv2d, nn.Linear)) and not is_depthwise(m)]
    assert len(others) == 1 + 6 + 1
    assert all(isinstance(m.parametrizations.weight[0], SpectralNorm) for m in others)


def test_init_and_resolution():
    D = DSCNNDiscriminator(48, 3, width=0.25)
    assert D(torch.zeros(1, 3, 48, 48)).shape == (1, 1)
    assert all(float(m.bias.detach().abs().max()) == 0 for m in D.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    assert float(D.features[0].weight.detach().abs().max()) <= 0.04 + 1e-7  # truncated at 2 std
    with pytest.raises(ValueError, match="divisible by 8"):
        DSCNNDiscriminator(30)
