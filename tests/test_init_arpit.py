"""The wn_arpit init (Arpit, Campos and Bengio 2019): the closed form per layer, and signal propagation at depth.

The propagation tests measure the squared norm of the layer outputs (forward) and of the gradients reaching them
(backward, for a random linear readout), per sample and averaged over the batch, at the first and the last hidden
layer of deep networks at initialization: the rule preserves norms (not per-unit variances, which differ by the
width ratio). Under the rule both ratios stay within 0.5..2 at any depth; without it (weight norm with g = 1, or the
plain rule in a residual network) they drift by orders of magnitude.
"""
import math

import pytest
import torch
from torch import nn

import gannorm
from gannorm.errors import InputError, OptionError
from gannorm.init import SCHEMES, arpit_g, fans, init_weights, raw_weight
from gannorm.networks import build_discriminator

pytestmark = pytest.mark.usefixtures("one_thread")


def g_of(layer):
    return layer.parametrizations.weight[0].g.detach()


def profile(model, x, layers):
    """Squared norms (per sample, batch mean) of each layer's output and of a random readout's gradient w.r.t. it."""
    outs = []

    def keep(module, args, out):
        out.retain_grad()
        outs.append(out)

    hooks = [layer.register_forward_hook(keep) for layer in layers]
    y = model(x)
    (y * torch.randn_like(y)).sum().backward()
    for h in hooks:
        h.remove()
    def norm2(t):
        return float(t.detach().flatten(1).square().sum(1).mean())
    return [norm2(o) for o in outs], [norm2(o.grad) for o in outs]


def zero_biases(model):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, gannorm.normalizations.NORMALIZABLE) and m.bias is not None:
                m.bias.zero_()


def unit_gains(model):  # the naive weight-norm init: g = 1, so every unit's weight vector has norm 1
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, gannorm.normalizations.NORMALIZABLE):
                m.parametrizations.weight[0].g.fill_(1.0)
    zero_biases(model)


# ------------------------------------------------------------------------------------------ the closed form
def test_the_gains_are_the_closed_form_and_the_directions_orthogonal():
    torch.manual_seed(0)
    d = gannorm.normalize(nn.Sequential(nn.Conv2d(3, 16, 3), nn.ReLU(), nn.Flatten(), nn.Linear(16 * 4 * 4, 24),
                                        nn.LeakyReLU(0.2), nn.Linear(24, 40), nn.Linear(40, 1)), "weight_norm")
    init_weights(d, "wn_arpit")
    expected = [math.sqrt(2 * 27 / 144),  # conv: fan_in 3*3*3, fan_out 16*3*3
                math.sqrt(2 / (1 + 0.2 ** 2) * 256 / 24),  # LeakyReLU(0.2): Kaiming's 2 / (1 + a^2)
                math.sqrt(1 * 24 / 40),  # no activation after it
                1.0]  # the output layer
    for layer, g in zip([d[0], d[3], d[5], d[6]], expected):
        torch.testing.assert_close(g_of(layer), torch.full_like(g_of(layer), g))
        assert torch.equal(layer.bias, torch.zeros_like(layer.bias))
    assert arpit_g(256, 24, 2 / 1.04) == pytest.approx(expected[1])
    v = raw_weight(d[3])  # [24, 256]: orthogonal rows
    torch.testing.assert_close(v @ v.T, torch.eye(24), atol=1e-5, rtol=0)
    v = raw_weight(d[5])  # [40, 24]: more rows than columns -> orthogonal columns (up to the row normalization)
    gram = (v.T @ v).detach()
    assert float((gram - torch.diag(torch.diagonal(gram))).abs().max()) < 0.5


def test_a_plain_layer_gets_the_effective_weight_and_init_then_normalize_is_normalize_then_init():
    def make():
        return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Unflatten(1, (16, 1)), nn.Conv1d(16, 6, 1), nn.ReLU(),
                             nn.Flatten(), nn.Linear(6, 1))

    torch.manual_seed(1)
    first_init = gannorm.normalize(init_weights(make(), "wn_arpit"), "weight_norm")
    row_norms = torch.linalg.vector_norm(raw_weight(first_init[0]), dim=1)
    torch.manual_seed(1)
    first_norm = init_weights(gannorm.normalize(make(), "weight_norm"), "wn_arpit")
    for a, b in zip(first_init.modules(), first_norm.modules()):
        if isinstance(a, gannorm.normalizations.NORMALIZABLE):
            torch.testing.assert_close(a.weight, b.weight)
            torch.testing.assert_close(g_of(a), g_of(b))
    torch.testing.assert_close(row_norms, torch.full((16,), math.sqrt(2 * 8 / 16)))
    x = torch.randn(5, 8)
    torch.testing.assert_close(first_init(x), first_norm(x))


def test_the_resnet_discriminator_gets_the_residual_rule():
    torch.manual_seed(0)
    assert "wn_arpit" in SCHEMES
    d = build_discriminator("resnet", (3, 32, 32), width=1 / 8, normalization="weight_norm", init="wn_arpit")
    n_blocks = len(d.blocks)
    assert n_blocks == 4
    for block in d.blocks:
        fi, fo = fans(block.c1)
        torch.testing.assert_close(g_of(block.c1), torch.full_like(g_of(block.c1), math.sqrt(2 * fi / fo)))
        fi, fo = fans(block.c2)  # the last layer of the residual branch: c = 1 / B
        torch.testing.assert_close(g_of(block.c2), torch.full_like(g_of(block.c2), math.sqrt(fi / fo / n_blocks)))
        if block.c_sc is not None:  # the shortcut: norm preserving, c = 1
            fi, fo = fans(block.c_sc)
            torch.testing.assert_close(g_of(block.c_sc), torch.full_like(g_of(block.c_sc), math.sqrt(fi / fo)))
    torch.testing.assert_close(g_of(d.linear), torch.ones(1))
    # the same gains when the weights are initialized before an SN-free plain build, then weight-normalized
    torch.manual_seed(0)
    plain = build_discriminator("resnet", (3, 32, 32), width=1 / 8, init="wn_arpit")
    w = plain.blocks[1].c2.weight.detach()
    torch.testing.assert_close(torch.linalg.vector_norm(w.flatten(1), dim=1), g_of(d.blocks[1].c2))


def test_bad_use_is_refused():
    with pytest.raises(OptionError, match="^init scheme 'wn_arpit' does not use distribution='uniform'; it takes "
                                          "bias$"):
        init_weights(nn.Linear(2, 2), "wn_arpit", distribution="uniform")

    class Hidden(nn.Module):  # describes a forward that leaves a layer out
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(2, 3), nn.Linear(3, 1)

        def lipschitz_structure(self):
            return [[("a", self.a)]]

    with pytest.raises(InputError, match="^wn_arpit: layer 'b' is not in the forward the model describes"):
        init_weights(Hidden(), "wn_arpit")


# ------------------------------------------------------------------------------------------ propagation at depth
def deep_mlp(widths, activation):
    layers = []
    for n_in, n_out in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(n_in, n_out), activation()]
    return nn.Sequential(*layers, nn.Linear(widths[-1], 1))


@pytest.mark.parametrize("activation", [nn.ReLU, lambda: nn.LeakyReLU(0.5)])
def test_a_deep_plain_network_keeps_its_signal_in_both_directions(activation):
    torch.manual_seed(0)
    widths = [256] * 21  # 20 layers (the fan ratios are checked by the closed-form test)
    x = torch.randn(512, 256)
    model = gannorm.normalize(deep_mlp(widths, activation), "weight_norm")
    hidden = [m for m in model if isinstance(m, nn.Linear)][:-1]
    fwd, bwd = profile(init_weights(model, "wn_arpit"), x, hidden)
    assert 0.5 < fwd[-1] / fwd[0] < 2 and 0.5 < bwd[0] / bwd[-1] < 2
    unit_gains(model)
    fwd, bwd = profile(model, x, hidden)
    assert fwd[-1] / fwd[0] < 1e-3 and bwd[0] / bwd[-1] < 1e-3


def test_a_deep_convolutional_network_keeps_its_signal_in_both_directions():
    # circular padding: no border where the signal leaks; 256 channels, 12 layers. At finite width the ratio of
    # one network is log-normal around 1, so the geometric mean over three draws is compared
    def cnn(channels=256, depth=12):
        layers = []
        for _ in range(depth):
            layers += [nn.Conv2d(channels, channels, 3, padding=1, padding_mode="circular"), nn.ReLU()]
        return nn.Sequential(*layers, nn.Flatten(), nn.Linear(channels * 6 * 6, 1))

    ratios = {"wn_arpit": [], "unit g": []}
    for seed in range(3):
        torch.manual_seed(seed)
        model = gannorm.normalize(cnn(), "weight_norm")
        x = torch.randn(16, 256, 6, 6)
        convs = [m for m in model if isinstance(m, nn.Conv2d)]
        fwd, bwd = profile(init_weights(model, "wn_arpit"), x, convs)
        ratios["wn_arpit"] += [fwd[-1] / fwd[0], bwd[0] / bwd[-1]]
        unit_gains(model)
        fwd, bwd = profile(model, x, convs)
        ratios["unit g"] += [fwd[-1] / fwd[0], bwd[0] / bwd[-1]]
    geo = {k: math.exp(sum(map(math.log, v[0::2])) / 3) for k, v in ratios.items()}
    geo_bwd = {k: math.exp(sum(map(math.log, v[1::2])) / 3) for k, v in ratios.items()}
    assert 0.5 < geo["wn_arpit"] < 2 and 0.5 < geo_bwd["wn_arpit"] < 2
    assert geo["unit g"] < 1e-2 and geo_bwd["unit g"] < 1e-2


class Block(nn.Module):
    """A pre-activation residual block ``x + fc2(relu(fc1(relu(x))))``, described for the init."""

    def __init__(self, width):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(width, width), nn.Linear(width, width)

    def forward(self, x):
        return x + self.fc2(torch.relu(self.fc1(torch.relu(x))))

    def lipschitz_structure(self):
        return [[(":relu", nn.ReLU()), ("fc1", self.fc1), (":relu", nn.ReLU()), ("fc2", self.fc2)],
                [(":identity", nn.Identity())]]


class ResidualMLP(nn.Module):
    def __init__(self, width=256, blocks=16):
        super().__init__()
        self.inp = nn.Linear(width, width)
        self.blocks = nn.Sequential(*(Block(width) for _ in range(blocks)))
        self.out = nn.Linear(width, 1)

    def forward(self, x):
        return self.out(torch.relu(self.blocks(self.inp(x))))

    def lipschitz_structure(self):
        return [[("inp", self.inp), ("blocks", self.blocks), (":relu", nn.ReLU()), ("out", self.out)]]


def test_a_deep_residual_network_grows_by_at_most_the_bounded_factor():
    torch.manual_seed(0)
    n_blocks = 16
    model = gannorm.normalize(ResidualMLP(256, n_blocks), "weight_norm")
    init_weights(model, "wn_arpit")
    torch.testing.assert_close(g_of(model.blocks[3].fc2), torch.full((256,), 1 / math.sqrt(n_blocks)))
    x = torch.randn(512, 256)
    fwd, bwd = profile(model, x, [model.inp, *model.blocks])
    # each branch adds ||relu(h)||^2 / B = ||h||^2 / (2B): the stream grows by (1 + 1/(2B))^B < sqrt(e)
    assert fwd[-1] / fwd[0] == pytest.approx((1 + 1 / (2 * n_blocks)) ** n_blocks, rel=0.1)
    assert 0.5 < fwd[-1] / fwd[0] < 2 and 0.5 < bwd[0] / bwd[-1] < 2
    # the plain rule without the 1/B (c = 2 on every layer) doubles the stream in every block
    with torch.no_grad():
        for block in model.blocks:
            block.fc2.parametrizations.weight[0].g.fill_(math.sqrt(2))
    fwd, bwd = profile(model, x, [model.inp, *model.blocks])
    assert fwd[-1] / fwd[0] > 1e4 and bwd[0] / bwd[-1] > 1e4
