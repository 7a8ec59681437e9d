"""weight_norm: W_eff = g * v / ||v|| per output unit, checked against torch's own weight_norm parametrization."""
import copy
import math

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import weight_norm as torch_weight_norm

import gannorm
from gannorm.diagnostics.lipschitz import explain_upper_bound, operator_norm
from gannorm.init import init_weights, raw_weight
from gannorm.networks import build_discriminator
from gannorm.normalizations.weight_norm import WeightNorm, weight_norm

pytestmark = pytest.mark.usefixtures("one_thread")
ARCHS = [("cnn", (3, 16, 16), 1 / 8), ("resnet", (3, 16, 16), 1 / 8), ("mlp", (2,), 1 / 4)]


def make_pair(layer, dim):
    """Our weight norm and torch's on copies of ``layer`` (float64), with the same g and v."""
    ours = weight_norm(copy.deepcopy(layer).double(), dim=dim)
    ref = torch_weight_norm(copy.deepcopy(layer).double(), dim=dim)
    with torch.no_grad():
        g = torch.rand(layer.weight.shape[dim], dtype=torch.float64) + 0.5
        ours.parametrizations.weight[0].g.copy_(g)
        ref.parametrizations.weight.original0.copy_(g.view(ref.parametrizations.weight.original0.shape))
        ours.parametrizations.weight.original.copy_(ref.parametrizations.weight.original1)
    return ours, ref


@pytest.mark.parametrize("layer,dim,shape", [
    (nn.Linear(7, 5), 0, (4, 7)),
    (nn.Conv2d(3, 6, 3, stride=2, padding=1), 0, (2, 3, 9, 9)),
    (nn.Conv2d(4, 6, 3, groups=2), 0, (2, 4, 7, 7)),
    (nn.ConvTranspose2d(3, 4, 3, stride=2), 1, (2, 3, 5, 5)),  # the output channels are dim 1
    (nn.ConvTranspose2d(3, 4, 3), 0, (2, 3, 5, 5)),  # torch's default dim=0 on a transposed conv
])
def test_forward_and_gradients_match_torch_weight_norm(layer, dim, shape):
    torch.manual_seed(0)
    ours, ref = make_pair(layer, dim)
    x1 = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    x2 = x1.detach().clone().requires_grad_(True)
    y1, y2 = ours(x1), ref(x2)
    torch.testing.assert_close(y1, y2, rtol=1e-6, atol=1e-6)
    r = torch.randn_like(y1)
    (y1 * r).sum().backward()
    (y2 * r).sum().backward()
    p1, p2 = ours.parametrizations.weight, ref.parametrizations.weight
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(p1[0].g.grad, p2.original0.grad.reshape(-1), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(p1.original.grad, p2.original1.grad, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("layer", [nn.Linear(7, 5), nn.Conv2d(3, 6, 3), nn.ConvTranspose2d(3, 4, 3, groups=1)])
def test_registration_keeps_the_weight_and_the_default_dim_is_the_output_channels(layer):
    w = layer.weight.detach().clone()
    weight_norm(layer)
    p = layer.parametrizations.weight[0]
    dim = 1 if isinstance(layer, nn.ConvTranspose2d) else 0
    assert isinstance(p, WeightNorm) and p.dim == dim and p.g.shape == (w.shape[dim],)
    torch.testing.assert_close(layer.weight, w, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(p.g, torch.linalg.vector_norm(w.movedim(dim, 0).flatten(1), dim=1))
    assert raw_weight(layer) is layer.parametrizations.weight.original
    torch.testing.assert_close(raw_weight(layer), w)


def test_a_zero_unit_is_refused():
    layer = nn.Linear(3, 2)
    with torch.no_grad():
        layer.weight[1].zero_()
    with pytest.raises(ValueError, match="^weight normalization divides .* 1 unit\\(s\\) have all-zero weights"):
        weight_norm(layer)
    assert not parametrize.is_parametrized(layer)


def test_init_schemes_set_the_effective_weight_they_draw():
    torch.manual_seed(0)
    d = gannorm.normalize(nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 1)), "weight_norm")
    init_weights(d, "kaiming")
    v = raw_weight(d[0])
    torch.testing.assert_close(d[0].weight, v)  # g was reset to ||v||
    assert float(v.detach().var()) == pytest.approx(2 / 64, rel=0.1)
    assert torch.equal(d[0].bias, torch.zeros(32))


def test_remove_leaves_the_effective_weight_as_a_plain_parameter():
    torch.manual_seed(0)
    d = gannorm.normalize(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 1)),
                          "weight_norm")
    with torch.no_grad():
        d[0].parametrizations.weight[0].g.mul_(1.7)
    w_eff = d[0].weight.detach().clone()
    x = torch.randn(2, 3, 8, 8)
    y = d(x)
    gannorm.remove_normalization(d)
    assert not any(parametrize.is_parametrized(m) for m in d.modules())
    assert type(d[0].weight) is nn.Parameter and torch.equal(d[0].weight.detach(), w_eff)
    assert set(d.state_dict()) == {"0.weight", "0.bias", "3.weight", "3.bias"}
    torch.testing.assert_close(d(x), y)


def test_a_second_normalization_is_refused():
    d = gannorm.normalize(nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)), "weight_norm")
    with pytest.raises(ValueError, match="already normalized"):
        gannorm.normalize(d, "sn")
    assert gannorm.sigmas(d) == {} and list(gannorm.normalized_layers(d)) == []


def test_the_operator_norm_of_a_weight_normalized_layer_is_exact():
    torch.manual_seed(0)
    lin = weight_norm(nn.Linear(9, 6))
    with torch.no_grad():
        lin.parametrizations.weight[0].g.uniform_(0.5, 2.0)
    sigma = float(torch.linalg.matrix_norm(lin.weight.detach(), 2))
    assert explain_upper_bound(nn.Sequential(lin), (9,)).value == pytest.approx(sigma, rel=1e-5)
    conv = weight_norm(nn.Conv2d(2, 3, 3, padding=1))
    with torch.no_grad():
        conv.parametrizations.weight[0].g.uniform_(0.5, 2.0)
    dense = torch.autograd.functional.jacobian(lambda t: conv(t), torch.zeros(1, 2, 5, 5)).reshape(3 * 25, 2 * 25)
    assert operator_norm(conv, (2, 5, 5)) == pytest.approx(float(torch.linalg.matrix_norm(dense, 2)), rel=1e-4)


@pytest.mark.parametrize("arch,shape,width", ARCHS)
def test_the_discriminators_train(arch, shape, width):
    torch.manual_seed(0)
    d = build_discriminator(arch, shape, width=width, normalization="weight_norm")
    layers = [m for m in d.modules() if isinstance(m, gannorm.normalizations.NORMALIZABLE)]
    assert all(isinstance(m.parametrizations.weight[0], WeightNorm) for m in layers)
    start = copy.deepcopy(d.state_dict())
    opt = torch.optim.Adam(d.parameters(), lr=1e-3, betas=(0.0, 0.9))
    real, fake = torch.randn(16, *shape), torch.randn(16, *shape) * 0.5 + 0.3
    losses = []
    for _ in range(5):
        loss = torch.relu(1 - d(real)).mean() + torch.relu(1 + d(fake)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0]
    gains = [k for k in start if k.endswith("parametrizations.weight.0.g")]
    assert len(gains) == len(layers)
    assert all(not torch.equal(v, start[k]) for k, v in d.state_dict().items() if k in gains)
    assert gannorm.sigmas(d) == {}
