"""SN/SSN against an SVD and against torch's own spectral norm."""
import pytest
import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as torch_spectral_norm

import gannorm


def key(layer):
    return type(layer).__name__.removeprefix("Parametrized")


def top_singular_value(mat: torch.Tensor) -> float:
    return float(torch.linalg.svdvals(mat.double())[0])


LAYERS = [
    lambda: nn.Linear(20, 7),
    lambda: nn.Conv1d(3, 5, 3),
    lambda: nn.Conv2d(3, 8, 3, padding=1),
    lambda: nn.Conv2d(8, 4, 4, stride=2, padding=1, groups=2),
    lambda: nn.Conv3d(2, 3, 2),
    lambda: nn.ConvTranspose2d(6, 4, 4, stride=2, padding=1),
]


@pytest.mark.parametrize("make", LAYERS)
def test_sigma_matches_svd_of_the_reshaped_kernel(make):
    layer = gannorm.spectral_norm(make(), warmup=500)
    raw = layer.parametrizations.weight.original.detach()
    dim = 1 if isinstance(layer, nn.ConvTranspose2d) else 0
    mat = raw.movedim(dim, 0).reshape(raw.shape[dim], -1)
    expected = top_singular_value(mat)
    assert gannorm.sigmas(layer)[f"{key(layer)}/sigma"] == pytest.approx(expected, rel=1e-5)
    layer.eval()
    torch.testing.assert_close(layer.weight.double(), raw.double() / expected, rtol=1e-5, atol=1e-7)
    # and the effective weight has spectral norm 1 in the same reshaping
    w = layer.weight.detach().movedim(dim, 0).reshape(raw.shape[dim], -1)
    assert top_singular_value(w) == pytest.approx(1.0, rel=1e-5)


@pytest.mark.parametrize("make", LAYERS)
def test_scaled_sn_multiplies_by_the_constant(make):
    layer = gannorm.spectral_norm(make(), scale=1.7, warmup=500).eval()
    raw = layer.parametrizations.weight.original
    dim = 1 if isinstance(layer, nn.ConvTranspose2d) else 0

    def matrix(w):
        return w.movedim(dim, 0).reshape(w.shape[dim], -1)

    sigma = top_singular_value(matrix(raw.detach()))
    torch.testing.assert_close(layer.weight.double(), 1.7 * raw.detach().double() / sigma, rtol=1e-5, atol=1e-7)
    assert not torch.nn.utils.parametrize.is_parametrized(layer, "bias")
    # gradients: the raw weight gets the chain rule through 1.7 * W / sigma_max(W) (an SVD by autograd, in
    # double), the bias gets exactly what it gets in a plain layer with the same effective weight (unscaled)
    plain = make()
    with torch.no_grad():
        plain.weight.copy_(layer.weight)
        plain.bias.copy_(layer.bias)
    x = torch.randn(3, *([layer.in_features] if isinstance(layer, nn.Linear) else
                         [layer.in_channels] + [5] * (raw.ndim - 2)))
    g = torch.randn_like(plain(x))
    (layer(x) * g).sum().backward()
    (plain(x) * g).sum().backward()
    raw_d = raw.detach().double().requires_grad_(True)
    effective = 1.7 * raw_d / torch.linalg.svdvals(matrix(raw_d))[0]
    (expected,) = torch.autograd.grad(effective, raw_d, grad_outputs=plain.weight.grad.double())
    torch.testing.assert_close(raw.grad.double(), expected, rtol=1e-4, atol=1e-5 * float(expected.abs().max()))
    torch.testing.assert_close(layer.bias.grad, plain.bias.grad)


def test_vector_weight_is_normalized_by_its_two_norm():
    layer = nn.Module()
    layer.weight = nn.Parameter(torch.randn(9))
    gannorm.spectral_norm(layer, warmup=0)
    original = layer.parametrizations.weight.original
    torch.testing.assert_close(layer.weight, original / original.norm())


@pytest.mark.parametrize("make", LAYERS)
@pytest.mark.parametrize("n_iter", [1, 3])
def test_parity_with_torch_spectral_norm_given_the_same_vectors(make, n_iter):
    ours = make()
    theirs = make()
    theirs.load_state_dict(ours.state_dict())
    gannorm.spectral_norm(ours, n_power_iterations=n_iter, warmup=0)
    torch_spectral_norm(theirs, n_power_iterations=n_iter)
    p_ours, p_theirs = ours.parametrizations.weight[0], theirs.parametrizations.weight[0]
    p_ours._u.copy_(p_theirs._u)
    p_ours._v.copy_(p_theirs._v)
    x = torch.randn(2, *([ours.in_features] if isinstance(ours, nn.Linear) else
                          [ours.in_channels] + [6] * (ours.parametrizations.weight.original.ndim - 2)))
    raw_o, raw_t = ours.parametrizations.weight.original, theirs.parametrizations.weight.original
    for _ in range(4):  # training forward, backward, step; then resync so rounding cannot accumulate
        out_o, out_t = ours(x), theirs(x)
        torch.testing.assert_close(out_o, out_t, rtol=1e-6, atol=1e-6 * float(out_t.abs().max()))
        torch.testing.assert_close(p_ours._u, p_theirs._u, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(p_ours._v, p_theirs._v, rtol=1e-6, atol=1e-6)
        g = torch.randn_like(out_t)
        (out_o * g).sum().backward()
        (out_t * g).sum().backward()
        torch.testing.assert_close(raw_o.grad, raw_t.grad, rtol=1e-5, atol=1e-5 * float(raw_t.grad.abs().max()))
        with torch.no_grad():
            for a, b in zip(theirs.parameters(), ours.parameters()):
                a -= 0.1 * a.grad
                b.copy_(a)
                a.grad, b.grad = None, None
            p_ours._u.copy_(p_theirs._u)
            p_ours._v.copy_(p_theirs._v)
    ours.eval(), theirs.eval()
    torch.testing.assert_close(ours(x), theirs(x), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(ours.weight, theirs.weight, rtol=1e-6, atol=1e-6 * float(theirs.weight.abs().max()))


def test_bad_options_give_clear_errors():
    with pytest.raises(ValueError, match="n_power_iterations"):
        gannorm.spectral_norm(nn.Linear(3, 3), n_power_iterations=0)
    with pytest.raises(ValueError, match="update must be one of forward, step"):
        gannorm.spectral_norm(nn.Linear(3, 3), update="sometimes")
    with pytest.raises(ValueError, match="no tensor parameter"):
        gannorm.spectral_norm(nn.Linear(3, 3), name="kernel")
