"""Strict SN against the largest singular value of the dense convolution operator."""
import pytest
import torch
from torch import nn
from torch.func import jacrev

import gannorm


def key(layer):
    return type(layer).__name__.removeprefix("Parametrized")


def dense_operator_norm(layer, input_shape):
    """Largest singular value of the Jacobian of the bias-free layer at one input of ``input_shape``."""
    w = layer.parametrizations.weight.original.detach().double()
    probe = type(layer)(**_ctor_kwargs(layer)).double()
    with torch.no_grad():
        probe.weight.copy_(w)
    x = torch.zeros(1, *input_shape, dtype=torch.float64)
    jac = jacrev(lambda t: probe(t))(x)
    out_numel = jac.shape[: jac.ndim - x.ndim]
    mat = jac.reshape(int(torch.tensor(out_numel).prod()), -1)
    return float(torch.linalg.svdvals(mat)[0])


def _ctor_kwargs(layer):
    kw = dict(in_channels=layer.in_channels, out_channels=layer.out_channels, kernel_size=layer.kernel_size,
              stride=layer.stride, padding=layer.padding, dilation=layer.dilation, groups=layer.groups, bias=False)
    if isinstance(layer, nn.ConvTranspose2d):
        kw["output_padding"] = layer.output_padding
    else:
        kw["padding_mode"] = layer.padding_mode
    return kw


CASES = [
    (lambda: nn.Conv2d(2, 3, 3, padding=1), (2, 6, 6)),
    (lambda: nn.Conv2d(2, 3, 3, padding=0), (2, 7, 7)),
    (lambda: nn.Conv2d(2, 3, 3, padding=2), (2, 5, 5)),
    (lambda: nn.Conv2d(2, 4, 4, stride=2, padding=1), (2, 8, 8)),
    (lambda: nn.Conv2d(2, 4, 3, stride=2, padding=1), (2, 7, 7)),
    (lambda: nn.Conv2d(2, 4, 3, stride=2, padding=0), (2, 8, 8)),
    (lambda: nn.Conv2d(4, 4, 3, padding=1, groups=2, dilation=2), (4, 6, 6)),
    (lambda: nn.Conv2d(2, 3, 4, padding="same"), (2, 6, 6)),
    (lambda: nn.Conv2d(2, 3, 3, padding=1, padding_mode="circular"), (2, 5, 5)),
    (lambda: nn.Conv2d(2, 3, 3, padding=1, padding_mode="reflect"), (2, 5, 5)),
    (lambda: nn.ConvTranspose2d(3, 2, 4, stride=2, padding=1), (3, 4, 4)),
]


@pytest.mark.parametrize("make,input_shape", CASES)
def test_strict_sigma_matches_dense_operator(make, input_shape):
    layer = gannorm.strict_spectral_norm(make(), input_shape=input_shape, warmup=3000)
    expected = dense_operator_norm(layer, input_shape)
    sigma = gannorm.sigmas(layer)[f"{key(layer)}/sigma"]
    assert sigma == pytest.approx(expected, rel=1e-4)
    # never below the reshaped-kernel sigma (the reshaped matrix is a block of the operator)
    w = layer.parametrizations.weight.original.detach()
    dim = 1 if isinstance(layer, nn.ConvTranspose2d) else 0
    reshaped = float(torch.linalg.svdvals(w.movedim(dim, 0).reshape(w.shape[dim], -1).double())[0])
    if layer.padding == (1, 1) and layer.stride == (1, 1) and not isinstance(layer, nn.ConvTranspose2d):
        assert sigma >= reshaped * (1 - 1e-5)
    layer.eval()
    torch.testing.assert_close(layer.weight.double(), w.double() / sigma, rtol=1e-6, atol=1e-8)


def test_normalize_records_each_layers_input_shape():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 4, 2, 1), nn.Flatten(),
                          nn.Linear(6 * 4 * 4, 1))
    gannorm.normalize(model, "strict_sn", input_shape=(3, 8, 8), warmup=2000)
    assert model[0].parametrizations.weight[0].input_shape == (3, 8, 8)
    assert model[2].parametrizations.weight[0].input_shape == (4, 8, 8)
    assert dense_operator_norm(model[2], (4, 8, 8)) == pytest.approx(gannorm.sigmas(model)["2/sigma"], rel=1e-4)
    lin = model[4].parametrizations.weight.original.detach().double()
    assert gannorm.sigmas(model)["4/sigma"] == pytest.approx(float(torch.linalg.svdvals(lin)[0]), rel=1e-5)


def test_strict_is_larger_than_reshaped_sigma_on_random_kernels():
    layer = nn.Conv2d(16, 16, 3, padding=1)
    strict = gannorm.strict_spectral_norm(nn.Conv2d(16, 16, 3, padding=1), input_shape=(16, 16, 16), warmup=500)
    strict.parametrizations.weight.original.data.copy_(layer.weight.data)
    gannorm.reset_power_iteration(strict, 500)
    reshaped = float(torch.linalg.svdvals(layer.weight.detach().reshape(16, -1))[0])
    assert gannorm.sigmas(strict)["Conv2d/sigma"] > 1.2 * reshaped


def test_bad_input_shape():
    with pytest.raises(ValueError, match="channels"):
        gannorm.strict_spectral_norm(nn.Conv2d(3, 4, 3), input_shape=(4, 8, 8))
    with pytest.raises(ValueError, match="input_shape"):
        gannorm.strict_spectral_norm(nn.Conv2d(3, 4, 3), input_shape=(3, 8))
    pending = gannorm.normalize(nn.Sequential(nn.Conv2d(3, 4, 3)), "strict_sn")  # no shape: at the first call
    with pytest.raises(RuntimeError):
        pending(torch.zeros(1, 4, 8, 8))  # a wrong input fails in the layer itself, as without normalization
