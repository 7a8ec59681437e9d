"""BSN/BSSN: both sigmas against an SVD of the right reshaping, and the formula."""
import pytest
import torch
from torch import nn

import gannorm
from gannorm.normalizations import power_iteration as pi


def key(layer):
    return type(layer).__name__.removeprefix("Parametrized")


def svd_top(mat):
    return float(torch.linalg.svdvals(mat.double())[0])


@pytest.mark.parametrize("make", [
    lambda: nn.Conv2d(3, 64, 3, padding=1),
    lambda: nn.Conv2d(64, 64, 4, 2, 1),
    lambda: nn.Conv2d(16, 8, 3),
    lambda: nn.Conv1d(4, 6, 5),
    lambda: nn.ConvTranspose2d(8, 5, 4, 2, 1),
])
@pytest.mark.parametrize("scale", [1.0, 1.4])
def test_bssn_formula_after_convergence(make, scale):
    layer = gannorm.bidirectional_spectral_norm(make(), scale=scale, warmup=2000).eval()
    w = layer.parametrizations.weight.original.detach()
    s1 = svd_top(w.reshape(w.shape[0], -1))
    s2 = svd_top(w.transpose(0, 1).reshape(w.shape[1], -1))
    est = gannorm.sigmas(layer)
    name = key(layer)
    assert est[f"{name}/sigma1"] == pytest.approx(s1, rel=1e-5)
    assert est[f"{name}/sigma2"] == pytest.approx(s2, rel=1e-5)
    assert est[f"{name}/sigma"] == pytest.approx((s1 + s2) / 2, rel=1e-5)
    torch.testing.assert_close(layer.weight.double(), scale * w.double() / ((s1 + s2) / 2), rtol=1e-5, atol=1e-7)
    if layer.bias is not None:
        assert not torch.nn.utils.parametrize.is_parametrized(layer, "bias")


def test_linear_layers_get_plain_sn_times_scale():
    layer = gannorm.bidirectional_spectral_norm(nn.Linear(30, 10), scale=2.0, warmup=500).eval()
    w = layer.parametrizations.weight.original.detach()
    torch.testing.assert_close(layer.weight.double(), 2.0 * w.double() / svd_top(w), rtol=1e-5, atol=1e-7)


def test_transposed_kernel_map_equals_the_materialised_matrix():
    w = torch.randn(5, 7, 3, 2, dtype=torch.float64)
    m2 = w.transpose(0, 1).reshape(7, -1)
    apply, adjoint = pi.transposed_kernel_map(w)
    x, y = torch.randn(5 * 6, dtype=torch.float64), torch.randn(7, dtype=torch.float64)
    torch.testing.assert_close(apply(x), m2 @ x)
    torch.testing.assert_close(adjoint(y), m2.t() @ y)


def test_sigmas_follow_closed_forms_when_the_groupings_differ():
    # W[o, i, :, :] = A[o] for every i: the fan-in matrix is [A A ... A] (sigma1 = sqrt(in) ||A||_2),
    # the fan-out matrix has `in` equal rows vec(A) (sigma2 = sqrt(in) ||A||_F): same shapes, different sigmas
    out, inp, k = 64, 64, 4
    a = torch.randn(out, k * k)
    layer = nn.Conv2d(inp, out, k, 2, 1)
    with torch.no_grad():
        layer.weight.copy_(a.view(out, 1, k, k).expand(out, inp, k, k))
    gannorm.bidirectional_spectral_norm(layer, warmup=500)
    est = gannorm.sigmas(layer)
    assert est["Conv2d/sigma1"] == pytest.approx(inp ** 0.5 * float(torch.linalg.matrix_norm(a, 2)), rel=1e-5)
    assert est["Conv2d/sigma2"] == pytest.approx(inp ** 0.5 * float(torch.linalg.matrix_norm(a, "fro")), rel=1e-5)
    assert est["Conv2d/sigma2"] > 1.5 * est["Conv2d/sigma1"]
