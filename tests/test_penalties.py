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
    gp = P.wgan_gp(D, real, fake, weight=10.0, generator=torch.Generator().manual_seed(3))
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
    torch.testing.assert_close(P.r1(D, real, fake, weight=4.0), 2.0 * (n_real ** 2).mean(), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(P.r2(D, real, fake, weight=4.0), 2.0 * (n_fake ** 2).mean(), rtol=1e-5, atol=1e-7)
    gen = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    t = torch.rand(8, 1, generator=gen())
    n_hat = direct_norms(D, t * real + (1 - t) * fake)
    torch.testing.assert_close(P.lipschitz_penalty(D, real, fake, 10.0, generator=gen()),
                               10 * (torch.relu(n_hat - 1) ** 2).mean(), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(P.zero_gp(D, real, fake, 10.0, generator=gen()), 10 * (n_hat ** 2).mean(), rtol=1e-5,
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


PENALTY_TERMS = {  # the definition of each term on per-sample gradient norms n (at x_hat, real or fake)
    "wgan_gp": ("interpolates", lambda n, w: w * ((n - 1) ** 2).mean()),
    "lp": ("interpolates", lambda n, w: w * (torch.relu(n - 1) ** 2).mean()),
    "zero_gp": ("interpolates", lambda n, w: w * (n ** 2).mean()),
    "r1": ("real", lambda n, w: w / 2 * (n ** 2).mean()),
    "r2": ("fake", lambda n, w: w / 2 * (n ** 2).mean()),
}


def test_the_registry_holds_the_five_penalties_with_one_signature_and_weight_10():
    import inspect
    assert set(P.PENALTIES.names()) == set(PENALTY_TERMS)
    assert gannorm.PENALTIES is P.PENALTIES
    for entry in P.PENALTIES.entries():
        spec = entry.obj
        assert spec.default_weight == 10.0 and entry.description == spec.description != ""
        params = inspect.signature(spec.fn).parameters
        assert list(params) == ["D", "real", "fake", "weight", "generator", "y_real", "y_fake"], entry.name
        for key in ("generator", "y_real", "y_fake"):
            assert params[key].kind is inspect.Parameter.KEYWORD_ONLY and params[key].default is None
        assert params["weight"].default is inspect.Parameter.empty  # the weight comes from the spec or the config


@pytest.mark.parametrize("name", sorted(PENALTY_TERMS))
def test_each_penalty_through_the_registry_equals_a_direct_computation(name):
    torch.manual_seed(0)
    D = nn.Sequential(nn.Flatten(), nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 1))  # curved: norms differ per point
    with torch.no_grad():
        D[3].weight.mul_(6)  # gradient norms on both sides of 1, so LP differs from WGAN-GP
    real, fake = torch.randn(8, 6), 3 * torch.randn(8, 6)
    spec = P.PENALTIES.get(name)
    got = spec.fn(D, real, fake, 2.5, generator=torch.Generator().manual_seed(7))
    where, term = PENALTY_TERMS[name]
    t = torch.rand(8, 1, generator=torch.Generator().manual_seed(7))
    x = {"interpolates": t * real + (1 - t) * fake, "real": real, "fake": fake}[where]
    expected = term(direct_norms(D, x), 2.5)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)
    assert float(expected) > 1e-3  # a non-trivial value, so a wrong term could not pass
    got.backward()  # double backprop reaches D's weights
    assert D[1].weight.grad is not None and float(D[1].weight.grad.abs().sum()) > 0


def test_r1_and_r2_ignore_the_other_batch():
    D = d()
    real, fake = torch.randn(4, 6), torch.randn(4, 6)
    torch.testing.assert_close(P.r1(D, real, fake, 10.0), P.r1(D, real, fake + 5, 10.0))
    torch.testing.assert_close(P.r2(D, real, fake, 10.0), P.r2(D, real - 5, fake, 10.0))


def test_orthogonal_regularization_scales_with_its_weight():
    lin = nn.Linear(4, 3, bias=False)
    torch.testing.assert_close(P.orthogonal_regularization(lin, weight=3.0),
                               3.0 * P.orthogonal_regularization(lin, 1.0))


class CondD(nn.Module):
    """A tiny curved projection discriminator D(x, y): gradient norms differ per point and per class."""

    def __init__(self, n_in: int = 6, classes: int = 3) -> None:
        super().__init__()
        self.phi = nn.Linear(n_in, 16)
        self.head = nn.Linear(16, 1)
        self.embed = nn.Embedding(classes, 16)

    def forward(self, x, y):
        h = torch.tanh(self.phi(x))
        return self.head(h) + 3 * (self.embed(y) * h).sum(1, keepdim=True)


def direct_norms_at(D, x, y):
    """Per-sample ||grad_x D(x_i, y_i)|| at fixed labels, one sample at a time by autograd.functional.jacobian."""
    return torch.stack([torch.autograd.functional.jacobian(lambda xi, i=i: D(xi[None], y[i:i + 1]).sum(), x[i]).norm()
                        for i in range(len(x))])


@pytest.mark.parametrize("name", sorted(PENALTY_TERMS))
def test_each_penalty_on_a_conditional_d_uses_the_documented_labels(name):
    torch.manual_seed(0)
    D = CondD()
    real, fake = torch.randn(8, 6), 3 * torch.randn(8, 6)
    y_real, y_fake = torch.randint(0, 3, (8,)), torch.randint(0, 3, (8,))
    spec = P.PENALTIES.get(name)
    got = spec.fn(D, real, fake, 2.5, generator=torch.Generator().manual_seed(7), y_real=y_real, y_fake=y_fake)
    where, term = PENALTY_TERMS[name]
    t = torch.rand(8, 1, generator=torch.Generator().manual_seed(7))
    x, y = {"interpolates": (t * real + (1 - t) * fake, y_real), "real": (real, y_real), "fake": (fake, y_fake)}[where]
    expected = term(direct_norms_at(D, x, y), 2.5)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)
    assert float(expected) > 1e-3
    other = spec.fn(D, real, fake, 2.5, generator=torch.Generator().manual_seed(7), y_real=(y_real + 1) % 3,
                    y_fake=(y_fake + 1) % 3)
    assert not torch.allclose(other, got)  # the labels reach D
    got.backward()
    assert float(D.embed.weight.grad.abs().sum()) > 0  # double backprop reaches the class embedding


def test_interpolation_penalties_ignore_the_fake_labels_and_r1_r2_the_other_labels():
    torch.manual_seed(1)
    D = CondD()
    real, fake = torch.randn(4, 6), torch.randn(4, 6)
    y, other = torch.tensor([0, 1, 2, 0]), torch.tensor([2, 2, 0, 1])
    for name in ("wgan_gp", "lp", "zero_gp", "r1"):
        fn = P.PENALTIES.get(name).fn
        gen = lambda: torch.Generator().manual_seed(2)  # noqa: E731
        torch.testing.assert_close(fn(D, real, fake, 10.0, generator=gen(), y_real=y, y_fake=y),
                                   fn(D, real, fake, 10.0, generator=gen(), y_real=y, y_fake=other))
    torch.testing.assert_close(P.r2(D, real, fake, 10.0, y_real=y, y_fake=other),
                               P.r2(D, real, fake, 10.0, y_real=other, y_fake=other))
