"""Depthwise DFT sigma against the dense convolution operator, and the dssn apply function."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import jacrev

import gannorm
from gannorm.normalizations.depthwise import (DepthwiseSeparableSpectralNorm, apply_dssn,
                                              depthwise_separable_spectral_norm, depthwise_sigma)
from gannorm.normalizations.spectral import SpectralNorm


def dense_sigma(w, groups, size, pad, mode, stride=1):
    """Largest singular value (float64 SVD) of x -> conv(pad(x), w) on a [1, groups, size, size] input."""
    w = w.detach().double()

    def f(x):
        return F.conv2d(F.pad(x, (pad,) * 4, mode=mode), w, None, stride, 0, 1, groups)

    x = torch.zeros(1, groups, size, size, dtype=torch.float64)
    jac = jacrev(f)(x)
    return float(torch.linalg.svdvals(jac.reshape(-1, x.numel()))[0])


def dw(c, mult=1, k=3, stride=1, mode="zeros"):
    return nn.Conv2d(c, c * mult, k, stride, padding=1, groups=c, bias=False, padding_mode=mode).double()


def param(layer):
    return layer.parametrizations.weight[0]


@pytest.mark.parametrize("mult", [1, 2])
@pytest.mark.parametrize("size", [6, 2])  # 2 < kernel: the kernel is folded onto the grid
def test_matches_dense_circular_operator(mult, size):
    layer = depthwise_separable_spectral_norm(dw(3, mult, mode="circular"), input_shape=(3, size, size))
    p = param(layer)
    assert isinstance(p, DepthwiseSeparableSpectralNorm) and p.fft_size == (size, size)
    raw = layer.parametrizations.weight.original
    sigma = float(p.sigma(raw).detach())
    dense = dense_sigma(raw, 3, size, 1, "circular")
    assert sigma == pytest.approx(dense, rel=1e-5)
    assert p.sigma_estimates(raw) == {"sigma": pytest.approx(sigma)}


def test_multiplier_is_not_a_max_over_single_outputs():
    """With m > 1 the m outputs of one channel stack: sqrt(sum |K_j|^2), larger than max_j |K_j|."""
    w = torch.randn(6, 1, 3, 3, dtype=torch.float64)
    per_output = torch.fft.fft2(w, s=(6, 6)).abs().amax()
    assert float(depthwise_sigma(w, 3, (6, 6))) > float(per_output)
    assert float(depthwise_sigma(w, 6, (6, 6))) == pytest.approx(float(per_output))  # m == 1 view


@pytest.mark.parametrize("k,stride", [(3, 1), (4, 2)])
@pytest.mark.parametrize("seed", range(5))
def test_upper_bound_for_zero_padding(k, stride, seed):
    torch.manual_seed(seed)
    layer = depthwise_separable_spectral_norm(dw(3, 1, k, stride), input_shape=(3, 6, 6))
    p = param(layer)
    assert p.fft_size == (8, 8)  # the padded grid: the DFT at (6, 6) is not a bound for zero padding
    raw = layer.parametrizations.weight.original
    assert dense_sigma(raw, 3, 6, 1, "constant", stride) <= float(p.sigma(raw).detach()) + 1e-6


@pytest.mark.parametrize("scale", [1.0, 1.5])
def test_effective_weight_has_sigma_scale(scale):
    layer = depthwise_separable_spectral_norm(dw(3, 2, mode="circular"), input_shape=(3, 6, 6), scale=scale)
    assert float(depthwise_sigma(layer.weight.detach(), 3, (6, 6))) == pytest.approx(scale, rel=1e-6)
    assert dense_sigma(layer.weight, 3, 6, 1, "circular") == pytest.approx(scale, rel=1e-5)
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    assert layer(x).shape == (2, 6, 6, 6)


def test_gradcheck():
    p = DepthwiseSeparableSpectralNorm(2, (4, 4), padding=(2, 2), scale=1.3)
    w = torch.randn(4, 1, 2, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(p, (w,))


def test_gradients_flow_through_the_layer():
    layer = depthwise_separable_spectral_norm(dw(3), input_shape=(3, 6, 6))
    layer(torch.randn(2, 3, 6, 6, dtype=torch.float64)).square().sum().backward()
    g = layer.parametrizations.weight.original.grad
    assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0


def test_apply_dssn_gives_other_layers_sn():
    depth, point, other, fc = dw(4), nn.Conv2d(4, 8, 1).double(), nn.Conv2d(1, 4, 3).double(), nn.Linear(8, 3).double()
    layers = [("dw", depth), ("pw", point), ("c", other), ("fc", fc)]
    apply_dssn(layers, {"dw": (4, 6, 6)}, scale=1.2, warmup=200)
    assert isinstance(param(depth), DepthwiseSeparableSpectralNorm)
    for _, m in layers[1:]:
        assert isinstance(param(m), SpectralNorm) and param(m).scale == 1.2
        m.eval()
        top = torch.linalg.svdvals(m.weight.detach().reshape(m.weight.shape[0], -1))[0]
        assert float(top) == pytest.approx(1.2, rel=1e-3)
    assert float(depthwise_sigma(depth.weight.detach(), 4, (8, 8))) == pytest.approx(1.2, rel=1e-6)
    gannorm.remove_normalization(nn.Sequential(depth, point))  # stateless parametrization removes cleanly
    assert not hasattr(depth, "parametrizations")


def test_errors():
    with pytest.raises(ValueError, match="input shape of depthwise layer 'dw'"):
        apply_dssn([("dw", dw(3))], {})
    with pytest.raises(ValueError, match="channels"):
        depthwise_separable_spectral_norm(dw(3), input_shape=(4, 6, 6))
    with pytest.raises(ValueError, match="padding_mode"):
        depthwise_separable_spectral_norm(dw(3, mode="reflect"), input_shape=(3, 6, 6))
