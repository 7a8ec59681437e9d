"""GN and PGN on random piecewise-linear discriminators, against hand computations and autograd."""
import pytest
import torch
from torch import nn

from gannorm.gradnorm import gradient_normalize, penalty_gradient_normalize


def mlp_d():
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 32), nn.LeakyReLU(0.2), nn.Linear(32, 32), nn.LeakyReLU(0.2),
                         nn.Linear(32, 1))


def conv_d():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.LeakyReLU(0.1), nn.Conv2d(8, 8, 4, 2, 1),
                         nn.LeakyReLU(0.1), nn.Flatten(), nn.Linear(8 * 4 * 4, 1))


CASES = [(mlp_d, (3, 2, 2)), (conv_d, (3, 8, 8))]


@pytest.mark.parametrize("make,shape", CASES)
def test_gn_is_bounded_and_piecewise_1_lipschitz(make, shape):
    d = make()
    x = torch.randn(16, *shape, requires_grad=True)
    out = gradient_normalize(d, x)
    assert out.shape == (16, 1) and (out.abs() < 1).all()
    # per-sample input gradient of the GN output, by autograd (samples are independent)
    (g,) = torch.autograd.grad(out.sum(), x)
    assert (g.flatten(1).norm(dim=1) <= 1 + 1e-5).all()


@pytest.mark.parametrize("make,shape", CASES)
def test_gn_is_invariant_to_positive_rescaling(make, shape):
    d = make()
    scaled = nn.Sequential(d, nn.Linear(1, 1, bias=False))
    with torch.no_grad():
        scaled[1].weight.fill_(7.5)
    x = torch.randn(8, *shape)
    torch.testing.assert_close(gradient_normalize(d, x), gradient_normalize(scaled, x), rtol=1e-5, atol=1e-6)


def test_gn_matches_the_formula_and_leaves_the_input_alone():
    d = mlp_d()
    x = torch.randn(5, 3, 2, 2)
    out = gradient_normalize(d, x)
    assert not x.requires_grad
    xs = x.clone().requires_grad_(True)
    f = d(xs)
    rows = []
    for i in range(5):  # one sample at a time: an independent per-sample gradient
        (gi,) = torch.autograd.grad(f[i, 0], xs, retain_graph=True)
        rows.append(f[i, 0] / (gi[i].norm() + f[i, 0].abs()))
    torch.testing.assert_close(out.squeeze(1), torch.stack(rows).detach(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("make,shape", CASES)
def test_pgn_equals_a_hand_computation_of_its_formula(make, shape):
    d = make()
    x = torch.randn(6, *shape)
    out = penalty_gradient_normalize(d, x)
    xs = x.clone().requires_grad_(True)
    f = d(xs)
    (g,) = torch.autograd.grad(f.sum(), xs)
    ones = torch.ones_like(x)
    expected = (1 - f.detach().squeeze(1)) / ((ones - g).flatten(1).norm(dim=1) + (1 - f.detach().squeeze(1)).abs())
    torch.testing.assert_close(out.squeeze(1).detach(), expected, rtol=1e-5, atol=1e-7)


def test_pgn_outputs_shrink_to_one_over_sqrt_chw_when_gradients_are_small():
    # a linear D f(x) = w.x with ||w|| = 0.01 << sqrt(CHW): grad f = w everywhere, so by hand
    # PGN = (1 - f) / (||1 - w|| + |1 - f|) ~ 1 / (sqrt(CHW) + 1) ~ 1/sqrt(CHW); GN = f / (||w|| + |f|) is not small
    means = []
    for shape in [(3, 8, 8), (3, 32, 32)]:
        n = shape[0] * shape[1] * shape[2]
        d = nn.Sequential(nn.Flatten(), nn.Linear(n, 1, bias=False))
        with torch.no_grad():
            d[1].weight.normal_().mul_(0.01 / d[1].weight.norm())
        w = d[1].weight.detach().double().squeeze(0)
        x = torch.randn(8, *shape)
        f = x.double().flatten(1) @ w
        by_hand = (1 - f) / ((1 - w).norm() + (1 - f).abs())
        out = penalty_gradient_normalize(d, x).squeeze(1).detach().double()
        torch.testing.assert_close(out, by_hand, rtol=1e-5, atol=1e-7)
        assert (out * (n ** 0.5 + 1)).numpy() == pytest.approx(1.0, abs=0.05)
        assert ((0.85 < out * n ** 0.5) & (out * n ** 0.5 < 1.05)).all()
        assert gradient_normalize(d, x).abs().mean() > 3 * n ** -0.5
        means.append(float(out.mean()))
    assert 3.5 < means[0] / means[1] < 4.2  # sqrt(3072 / 192) = 4


@pytest.mark.parametrize("eps", [0.0, 0.1])
@pytest.mark.parametrize("make,shape", CASES)
def test_first_order_g_step_matches_double_backprop(make, shape, eps):
    d = make().requires_grad_(False)
    g = nn.Sequential(nn.Linear(4, int(torch.tensor(shape).prod())), nn.Unflatten(1, shape))
    z = torch.randn(16, 4)
    grads = []
    for first_order in (False, True):
        g.zero_grad()
        loss = nn.functional.softplus(-gradient_normalize(d, g(z), eps, first_order=first_order)).mean()
        loss.backward()
        grads.append([p.grad.clone() for p in g.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_first_order_needs_a_frozen_discriminator():
    d, x = conv_d(), torch.randn(2, 3, 8, 8)
    with pytest.raises(ValueError, match="requires_grad_\\(False\\)"):
        gradient_normalize(d, x, first_order=True)


def test_d_and_g_both_train_through_gn():
    d, g = conv_d(), nn.Sequential(nn.Linear(4, 3 * 8 * 8), nn.Unflatten(1, (3, 8, 8)))
    out = gradient_normalize(d, g(torch.randn(4, 4)))
    out.mean().backward()
    assert all(p.grad is not None for p in d.parameters()) and all(p.grad is not None for p in g.parameters())


def test_batch_coupling_layers_are_refused():
    d = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(1))
    with pytest.raises(ValueError, match="without batch-coupling layers.*BatchNorm2d"):
        gradient_normalize(d, torch.randn(2, 3, 8, 8))
    with pytest.raises(ValueError, match="batch-coupling"):
        penalty_gradient_normalize(d, torch.randn(2, 3, 8, 8))


@pytest.mark.parametrize("kind", ["none", "gn", "pgn"])
def test_gradient_normalized_dispatches_through_the_registry_entry(kind):
    from gannorm.gradnorm import FUNCTIONS, GradientNormalized
    d, x = conv_d(), torch.randn(4, 3, 8, 8)
    wrapped = GradientNormalized(d, kind, eps=0.1)
    assert wrapped.spec is FUNCTIONS.get(kind)
    direct = {"none": lambda: d(x), "gn": lambda: gradient_normalize(d, x, 0.1),
              "pgn": lambda: penalty_gradient_normalize(d, x, 0.1)}[kind]()
    torch.testing.assert_close(wrapped(x), direct)
    assert [FUNCTIONS.get(k).first_order_g for k in ("none", "gn", "pgn")] == [False, True, False]


def test_gradient_normalized_takes_the_first_order_g_step_only_where_the_entry_supports_it():
    from gannorm.gradnorm import GradientNormalized
    d, x = conv_d().requires_grad_(False), torch.randn(4, 3, 8, 8, requires_grad=True)
    gn = GradientNormalized(d, "gn", first_order_g=True)
    assert "FirstOrderGN" in type(gn(x).grad_fn).__name__  # frozen D: the first-order form
    pgn = GradientNormalized(d, "pgn", first_order_g=True)  # PGN has none: its own (second-order) outputs
    torch.testing.assert_close(pgn(x), penalty_gradient_normalize(d, x))
    d.requires_grad_(True)
    assert "FirstOrderGN" not in type(gn(x).grad_fn).__name__  # D trains: double backprop


def test_gradient_normalized_refuses_an_unknown_kind_with_the_known_ones():
    from gannorm.gradnorm import GradientNormalized
    with pytest.raises(ValueError, match="unknown function-level normalization 'sgn'; known: none, gn, pgn"):
        GradientNormalized(conv_d(), "sgn")


class CondD(nn.Module):
    """A tiny projection discriminator D(x, y): a LeakyReLU feature map, a linear head and a class embedding."""

    def __init__(self, n_in: int = 12, classes: int = 3) -> None:
        super().__init__()
        self.phi = nn.Linear(n_in, 16)
        self.head = nn.Linear(16, 1)
        self.embed = nn.Embedding(classes, 16)

    def forward(self, x, y):
        h = nn.functional.leaky_relu(self.phi(x.flatten(1)), 0.2)
        return self.head(h) + (self.embed(y) * h).sum(1, keepdim=True)


def per_sample_f_and_grad(d, x, y):
    """f_i = D(x_i, y_i) and grad_{x_i} f_i for each sample alone, by torch.autograd.functional.jacobian."""
    fs, gs = [], []
    for i in range(len(x)):
        fn = lambda xi, i=i: d(xi.unsqueeze(0), y[i:i + 1]).reshape(())  # noqa: E731
        fs.append(fn(x[i]).detach())
        gs.append(torch.autograd.functional.jacobian(fn, x[i]))
    return torch.stack(fs), torch.stack(gs)


def test_gn_and_pgn_of_a_conditional_d_match_a_per_sample_jacobian_at_fixed_labels():
    torch.manual_seed(0)
    d = CondD().double()
    x, y = torch.randn(6, 3, 2, 2, dtype=torch.float64), torch.tensor([0, 1, 2, 2, 1, 0])
    f, g = per_sample_f_and_grad(d, x, y)
    n = g.flatten(1).norm(dim=1)
    torch.testing.assert_close(gradient_normalize(d, x, y=y).squeeze(1).detach(), f / (n + f.abs()))
    shifted = (1 - g).flatten(1).norm(dim=1)
    torch.testing.assert_close(penalty_gradient_normalize(d, x, 0.1, y=y).squeeze(1).detach(),
                               (1 - f) / (shifted + (1 - f).abs() + 0.1))
    # the labels matter: other classes give other outputs (a different embedding row, a different gradient)
    assert not torch.allclose(gradient_normalize(d, x, y=(y + 1) % 3), gradient_normalize(d, x, y=y))


def test_gn_of_a_conditional_d_against_finite_differences():
    torch.manual_seed(1)
    d = CondD().double()
    x, y = torch.randn(3, 12, dtype=torch.float64), torch.tensor([2, 0, 1])
    h = 1e-6
    with torch.no_grad():
        f = d(x, y).squeeze(1)
        grad = torch.stack([(d(x + h * e, y) - d(x - h * e, y)).squeeze(1) / (2 * h) for e in torch.eye(12,
                            dtype=torch.float64)], dim=1)  # central differences in each input coordinate
    expected = f / (grad.norm(dim=1) + f.abs())
    torch.testing.assert_close(gradient_normalize(d, x, y=y).squeeze(1).detach(), expected, rtol=1e-6, atol=1e-8)


def test_conditional_first_order_g_step_matches_double_backprop():
    torch.manual_seed(2)
    d = CondD().requires_grad_(False)
    g = nn.Linear(4, 12)
    z, y = torch.randn(8, 4), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    grads = []
    for first_order in (False, True):
        g.zero_grad()
        nn.functional.softplus(-gradient_normalize(d, g(z), y=y, first_order=first_order)).mean().backward()
        grads.append([p.grad.clone() for p in g.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["none", "gn", "pgn"])
def test_gradient_normalized_passes_the_labels_through(kind):
    from gannorm.gradnorm import GradientNormalized
    torch.manual_seed(3)
    d, x, y = CondD(), torch.randn(5, 12), torch.tensor([0, 1, 2, 1, 0])
    wrapped = GradientNormalized(d, kind)
    direct = {"none": lambda: d(x, y), "gn": lambda: gradient_normalize(d, x, y=y),
              "pgn": lambda: penalty_gradient_normalize(d, x, y=y)}[kind]()
    torch.testing.assert_close(wrapped(x, y), direct)
    assert not torch.allclose(wrapped(x, (y + 1) % 3), direct)
    wrapped.first_order_g = True
    d.requires_grad_(False)
    torch.testing.assert_close(wrapped(x, y), direct)


def test_unconditional_calls_are_unchanged_by_the_label_argument():
    d, x = conv_d(), torch.randn(4, 3, 8, 8)
    assert torch.equal(gradient_normalize(d, x, 0.1, y=None), gradient_normalize(d, x, 0.1))
    assert torch.equal(penalty_gradient_normalize(d, x, y=None), penalty_gradient_normalize(d, x))


def test_every_function_entry_takes_keyword_only_labels():
    import inspect

    from gannorm.gradnorm import FUNCTIONS
    for entry in FUNCTIONS.entries():
        params = inspect.signature(entry.obj.fn).parameters
        assert list(params)[:3] == ["D", "x", "eps"], entry.name
        assert params["y"].kind is inspect.Parameter.KEYWORD_ONLY and params["y"].default is None, entry.name
