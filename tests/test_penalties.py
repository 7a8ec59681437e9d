"""Penalties against direct computations."""
import pytest
import torch
from torch import nn

import gannorm
from gannorm import penalties as P


def d():
    return nn.Sequential(nn.Flatten(), nn.Linear(6, 16), nn.LeakyReLU(0.2), nn.Linear(16, 1))


def direct_norms(D, x):
    """Per-sample input-gradient norms, one sample at a time."""
    out = []
    for i in range(len(x)):
        xi = x[i:i + 1].clone().requires_grad_(True)
        (g,) = torch.autograd.grad(D(xi).sum(), xi)
        out.append(g.norm())
    return torch.stack(out)


def test_wgan_gp_matches_a_direct_computation():
    D = d()
    real, fake = torch.randn(8, 6), torch.randn(8, 6)
    gp = P.wgan_gp(D, real, fake, lam=10.0, generator=torch.Generator().manual_seed(3))
    t = torch.rand(8, 1, generator=torch.Generator().manual_seed(3))
    x_hat = t * real + (1 - t) * fake
    expected = 10.0 * ((direct_norms(D, x_hat) - 1) ** 2).mean()
    torch.testing.assert_close(gp, expected, rtol=1e-5, atol=1e-7)
    gp.backward()  # it trains D (double backprop)
    assert D[1].weight.grad is not None and D[3].weight.grad is not None  # the output bias gets none


def test_other_penalties_follow_their_formulas():
    D = d()
    real, fake = torch.randn(8, 6), torch.randn(8, 6)
    n_real, n_fake = direct_norms(D, real), direct_norms(D, fake)
    torch.testing.assert_close(P.r1(D, real, gamma=4.0), 2.0 * (n_real ** 2).mean(), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(P.r2(D, fake, gamma=4.0), 2.0 * (n_fake ** 2).mean(), rtol=1e-5, atol=1e-7)
    gen = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    t = torch.rand(8, 1, generator=gen())
    n_hat = direct_norms(D, t * real + (1 - t) * fake)
    torch.testing.assert_close(P.lipschitz_penalty(D, real, fake, 10.0, gen()),
                               10 * (torch.relu(n_hat - 1) ** 2).mean(), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(P.zero_gp(D, real, fake, 10.0, gen()), 10 * (n_hat ** 2).mean(), rtol=1e-5,
                               atol=1e-7)


def test_weight_clip_and_orthogonal_regularization():
    D = gannorm.normalize(d(), "sn")
    P.weight_clip_(D, 0.01)
    assert all(float(p.abs().max()) <= 0.01 for p in D.parameters())
    lin = nn.Linear(4, 3, bias=False)
    w = lin.weight.detach()
    gram = w @ w.t()
    eye = torch.eye(3)
    torch.testing.assert_close(P.orthogonal_regularization(lin, 1.0, off_diagonal=False),
                               ((gram - eye) ** 2).sum())
    torch.testing.assert_close(P.orthogonal_regularization(lin, 1.0), ((gram * (1 - eye)) ** 2).sum())
    with torch.no_grad():
        nn.init.orthogonal_(lin.weight)
    assert float(P.orthogonal_regularization(lin, 1.0, off_diagonal=False)) < 1e-10
