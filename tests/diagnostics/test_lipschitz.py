"""Lipschitz bounds: operator norms against dense-Jacobian SVDs, bounds against gradients and finite differences."""
from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

import gannorm
from gannorm.diagnostics.lipschitz import (RULES, explain_upper_bound, lipschitz_lower_bound, lipschitz_upper_bound,
                                           operator_norm)
from gannorm.gradnorm import GradientNormalized
from gannorm.networks import build_discriminator
from gannorm.networks.blocks import DBlock, DBlockOptimized
from gannorm.networks.mlp import MLPGenerator
from gannorm.penalties import interpolates


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny ops: see tests/conftest.py


# ----------------------------------------------------------------------------------------- references
def dense_jacobian(fn, input_shape) -> torch.Tensor:
    """The matrix of the linear part of ``fn`` in float64, column i = fn(e_i) - fn(0)."""
    n = math.prod(input_shape)
    with torch.no_grad():
        basis = torch.eye(n, dtype=torch.float64).reshape(n, *input_shape)
        zero = torch.zeros((1, *input_shape), dtype=torch.float64)
        out = fn(basis) - fn(zero)
    return out.reshape(n, -1).T


def exact_norm(module: nn.Module, input_shape) -> float:
    ref = copy.deepcopy(module).double().eval()
    return float(torch.linalg.svdvals(dense_jacobian(ref, input_shape))[0])


def fd_ratios(D: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        num = (D(x) - D(y)).flatten(1).norm(dim=1)
    return num / (x - y).flatten(1).norm(dim=1)


def state_copy(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_state_equal(model: nn.Module, before: dict[str, torch.Tensor]) -> None:
    after = model.state_dict()
    assert after.keys() == before.keys()
    for k, v in before.items():
        assert torch.equal(after[k], v), f"{k} changed"


def explained(D, shape):
    """``(value, reason)`` of :func:`explain_upper_bound`; the value is the one of :func:`lipschitz_upper_bound`."""
    report = explain_upper_bound(D, shape)
    assert report.value == lipschitz_upper_bound(D, shape)
    return report.value, report.reason


# ----------------------------------------------------------------------------------------- operator_norm
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("padding_mode", ["zeros", "reflect", "circular"])
def test_conv2d_operator_norm_matches_dense_svd(stride, padding_mode):
    conv = nn.Conv2d(3, 4, 3, stride, padding=1, padding_mode=padding_mode)  # with bias: must not count
    shape = (3, 6, 6)
    got = operator_norm(conv, shape, n_iter=500, tol=1e-10)
    assert got == pytest.approx(exact_norm(conv, shape), rel=1e-4)


def test_grouped_dilated_conv_and_conv1d():
    conv = nn.Conv2d(4, 6, 3, 1, padding=2, dilation=2, groups=2, bias=False)
    assert operator_norm(conv, (4, 5, 7), n_iter=500, tol=1e-10) == pytest.approx(exact_norm(conv, (4, 5, 7)), rel=1e-4)
    conv1 = nn.Conv1d(2, 3, 5, 2, padding=2)
    assert operator_norm(conv1, (2, 11), n_iter=500, tol=1e-10) == pytest.approx(exact_norm(conv1, (2, 11)), rel=1e-4)


def test_linear_operator_norm_is_top_singular_value():
    lin = nn.Linear(7, 5)
    expected = float(torch.linalg.svdvals(lin.weight.detach().double())[0])
    assert operator_norm(lin, (7,), n_iter=500, tol=1e-10) == pytest.approx(expected, rel=1e-4)


def test_avg_pool_operator_norm():
    assert operator_norm(nn.AvgPool2d(2), (3, 8, 8)) == pytest.approx(0.5, rel=1e-6)
    pool = nn.AvgPool2d(3, 1, padding=1)  # overlapping windows, zero padding counted: a real computation
    assert operator_norm(pool, (2, 5, 5), n_iter=500, tol=1e-10) == pytest.approx(exact_norm(pool, (2, 5, 5)), rel=1e-4)


def test_conv_transpose_operator_norm():
    deconv = nn.ConvTranspose2d(4, 3, 4, 2, padding=1)
    shape = (4, 4, 4)
    assert operator_norm(deconv, shape, n_iter=500, tol=1e-10) == pytest.approx(exact_norm(deconv, shape), rel=1e-4)


def test_operator_norm_refuses_nonaffine_modules():
    with pytest.raises(ValueError, match="not affine"):
        operator_norm(nn.Sequential(nn.Linear(4, 4), nn.Tanh()), (4,))
    with pytest.raises(ValueError, match="not affine"):
        operator_norm(nn.ReLU(), (4,))


def test_operator_norm_of_sn_layer_uses_effective_weight_and_changes_nothing():
    conv = gannorm.normalize(nn.Conv2d(3, 5, 4, 2, padding=1), "sn")
    with torch.no_grad():
        conv.parametrizations.weight.original.mul_(3.0)  # stored u, v now stale: sigma != 1
    conv.train()
    buffers = dict(conv.parametrizations.weight[0].named_buffers())
    assert buffers, "the SN parametrization should hold its power-iteration vectors as buffers"
    before = state_copy(conv)
    rng = torch.get_rng_state()

    got = operator_norm(conv, (3, 8, 8), n_iter=500, tol=1e-10)

    assert_state_equal(conv, before)
    assert torch.equal(torch.get_rng_state(), rng)
    assert conv.training and conv.parametrizations.weight[0].training
    # reference: the eval-mode effective weight (stored vectors, no update) in a plain conv
    with torch.no_grad():
        conv.eval()
        w_eff = conv.weight.detach().clone()
        conv.train()
    plain = nn.Conv2d(3, 5, 4, 2, padding=1, bias=False)
    plain.weight.data.copy_(w_eff)
    assert got == pytest.approx(exact_norm(plain, (3, 8, 8)), rel=1e-4)
    assert_state_equal(conv, before)


# ----------------------------------------------------------------------------------------- exact compositions
def test_linear_chain_bound_is_norm_of_the_product():
    chain = nn.Sequential(nn.Conv2d(2, 3, 3, 1, padding=1), nn.Conv2d(3, 4, 4, 2, padding=1),
                          nn.Sequential(nn.AvgPool2d(2), nn.Flatten()), nn.Dropout(0.5), nn.Linear(16, 3))
    shape = (2, 8, 8)
    report = explain_upper_bound(chain, shape, n_iter=1000, tol=1e-10)
    assert report.reason == "ok"
    assert report.value == pytest.approx(exact_norm(chain, shape), rel=1e-4)
    assert [name for name, _ in report.parts] == ["0+1+2.0+2.1+3+4"]  # one merged affine run


def test_chain_with_activations_is_product_of_exact_norms():
    a, b = nn.Linear(6, 5), nn.Linear(5, 2)
    net = nn.Sequential(a, nn.LeakyReLU(0.2), b, nn.Sigmoid())
    na = float(torch.linalg.svdvals(a.weight.detach().double())[0])
    nb = float(torch.linalg.svdvals(b.weight.detach().double())[0])
    assert lipschitz_upper_bound(net, (6,), n_iter=1000, tol=1e-10) == pytest.approx(na * nb * 0.25, rel=1e-4)
    steep = nn.Sequential(a, nn.LeakyReLU(-3.0))  # |slope| > 1 dominates
    assert lipschitz_upper_bound(steep, (6,), n_iter=1000, tol=1e-10) == pytest.approx(3 * na, rel=1e-4)


def test_residual_block_is_sum_of_branches():
    block = DBlock(4, 4, downsample=False)  # identity shortcut
    shape = (4, 6, 6)
    expected = exact_norm(block.c1, shape) * exact_norm(block.c2, shape) + 1.0
    assert lipschitz_upper_bound(block, shape, n_iter=1000, tol=1e-10) == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize("pool", ["sum", "mean"])
def test_resnet_global_pool_factor(pool):
    D = build_discriminator("resnet", (3, 16, 16), width=0.0625, pool=pool)
    report = explain_upper_bound(D, (3, 16, 16))
    parts = dict(report.parts)
    w = float(torch.linalg.svdvals(D.linear.weight.detach().double())[0])
    hw = 4 * 4  # 16 px, two downsampling blocks
    factor = math.sqrt(hw) if pool == "sum" else 1 / math.sqrt(hw)
    assert parts[f":{pool}_pool+linear"] == pytest.approx(w * factor, rel=1e-4)
    assert report.value is not None and report.value > 0


# ----------------------------------------------------------------------------------------- validity on random models
def _small_conv_chain():
    return nn.Sequential(nn.Conv2d(3, 6, 3, 1, padding=1, padding_mode="reflect"), nn.LeakyReLU(0.2),
                         nn.MaxPool2d(3, 2, padding=1), nn.Conv2d(6, 6, 4, 2, padding=1), nn.ELU(),
                         nn.Upsample(scale_factor=2), nn.Conv2d(6, 2, 3, 1, padding=1), nn.Tanh(),
                         nn.Flatten(), nn.Linear(2 * 4 * 4, 1))


MODELS = {
    "mlp": (lambda: build_discriminator("mlp", (5,), depth=3, hidden=16), (5,)),
    "conv_chain": (_small_conv_chain, (3, 8, 8)),
    "cnn": (lambda: build_discriminator("cnn", (3, 16, 16), width=0.0625), (3, 16, 16)),
    "dscnn": (lambda: build_discriminator("dscnn", (3, 16, 16), width=0.0625), (3, 16, 16)),
    "resnet": (lambda: build_discriminator("resnet", (3, 16, 16), width=0.0625), (3, 16, 16)),
    "resnet_mean": (lambda: build_discriminator("resnet", (3, 16, 16), width=0.0625, pool="mean"), (3, 16, 16)),
}


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_upper_bound_dominates_gradients_and_finite_differences(name, seed):
    torch.manual_seed(seed)
    make, shape = MODELS[name]
    D = make()
    if name in ("cnn", "dscnn"):  # the official 0.02 init makes a vanishing D; use a livelier one
        gannorm.init_weights(D, "kaiming")
    upper, reason = explained(D, shape)
    assert reason == "ok" and upper is not None and upper > 0

    real, fake = torch.randn(8, *shape), 0.5 * torch.randn(8, *shape) + 1
    lower = lipschitz_lower_bound(D, real, fake, interpolates(real, fake))
    assert 0 < lower <= upper * (1 + 1e-5)

    D.eval()
    x = torch.randn(16, *shape)
    far = fd_ratios(D, x, torch.randn(16, *shape))
    # steepest local direction: a step along the input gradient (finite difference ~ gradient norm)
    xg = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(D(xg).sum(), xg)
    step = 1e-3 * g / g.flatten(1).norm(dim=1).clamp_min(1e-30).view(-1, *[1] * len(shape))
    near = fd_ratios(D, x, x + step)
    assert float(torch.cat([far, near]).max()) <= upper * (1 + 1e-4)


# ----------------------------------------------------------------------------------------- side effects
@pytest.mark.parametrize("method", ["sn", "msn"])
def test_normalized_model_state_and_flags_untouched(method):
    D = gannorm.normalize(build_discriminator("cnn", (3, 16, 16), width=0.0625), method)
    if method == "msn":
        msn = [m for m in D.modules() if type(m).__name__ == "MeanOnlyBatchNorm"]
        assert msn
        with torch.no_grad():
            for m in msn:
                m.weight.uniform_(-3, 3)
                m.running_mean.normal_()
    D.train()
    D.features[2].eval()  # mixed flags must come back exactly
    flags = {name: m.training for name, m in D.named_modules()}
    sn_layer = D.features[0]
    assert dict(sn_layer.parametrizations.weight[0].named_buffers())
    x = torch.randn(6, 3, 16, 16)
    before = state_copy(D)
    rng = torch.get_rng_state()

    upper = lipschitz_upper_bound(D, (3, 16, 16))
    lower = lipschitz_lower_bound(D, x)
    operator_norm(sn_layer, (3, 16, 16))

    assert upper is not None and lower <= upper * (1 + 1e-5)
    assert_state_equal(D, before)
    assert {name: m.training for name, m in D.named_modules()} == flags
    assert all(p.grad is None for p in D.parameters())
    assert torch.equal(torch.get_rng_state(), rng)


def test_msn_conv_norm_includes_the_gain():
    conv = nn.Conv2d(2, 3, 3, 1, padding=1)
    gannorm.normalize(nn.Sequential(conv), "msn")  # the last conv gets SN and a mean-only BN hook
    gamma = torch.tensor([0.5, -4.0, 2.0])
    with torch.no_grad():
        conv.msn.weight.copy_(gamma)
        conv.msn.running_mean.normal_()
        conv.msn.bias.normal_()
        conv.eval()
        w_eff = conv.weight.detach().clone()
    conv.train()
    shape = (2, 5, 5)
    got = lipschitz_upper_bound(nn.Sequential(conv), shape, n_iter=1000, tol=1e-10)
    # reference: diag(gamma) (per output channel) times the dense matrix of the plain conv with W_eff
    plain = nn.Conv2d(2, 3, 3, 1, padding=1, bias=False).double()
    with torch.no_grad():
        plain.weight.copy_(w_eff.double())
    J = dense_jacobian(plain, shape)
    J = gamma.double().repeat_interleave(25)[:, None] * J
    assert got == pytest.approx(float(torch.linalg.svdvals(J)[0]), rel=1e-4)


def test_lower_bound_of_a_linear_map_is_its_norm():
    lin = nn.Linear(6, 1)
    w = float(lin.weight.detach().norm())
    assert lipschitz_lower_bound(lin, torch.randn(3, 6)) == pytest.approx(w, rel=1e-5)
    assert lipschitz_upper_bound(lin, (6,)) == pytest.approx(w, rel=1e-5)
    eye = nn.Linear(4, 4, bias=False)
    with torch.no_grad():
        eye.weight.copy_(torch.eye(4))
    # several outputs: still a valid lower bound of ||J|| = 1
    assert lipschitz_lower_bound(eye, torch.randn(2, 4)) <= 1 + 1e-6


def test_gradient_normalized_has_no_upper_bound_but_a_lower_one():
    inner = build_discriminator("mlp", (3,), depth=2, hidden=8)
    D = GradientNormalized(inner)
    value, reason = explained(D, (3,))
    assert value is None and "GradientNormalized" in reason
    lower = lipschitz_lower_bound(D, torch.randn(16, 3))
    assert 0 < lower <= 1 + 1e-5  # piecewise 1-Lipschitz
    assert all(p.grad is None for p in D.parameters())


# ----------------------------------------------------------------------------------------- unknown modules
class Mystery(nn.Module):
    def forward(self, x):
        return 3 * x


class CustomSequential(nn.Sequential):
    def forward(self, x):
        return 5 * super().forward(x)


def test_unknown_module_gives_none_with_its_name():
    net = nn.Sequential(nn.Linear(3, 3), nn.Sequential(nn.ReLU(), Mystery()))
    value, reason = explained(net, (3,))
    assert value is None
    assert "'1.1'" in reason and "Mystery" in reason
    report = explain_upper_bound(net, (3,))
    assert report.value is None and report.reason == reason


def test_subclass_with_own_forward_gets_no_inherited_rule():
    net = CustomSequential(nn.Linear(3, 3))
    value, reason = explained(net, (3,))
    assert value is None and "CustomSequential" in reason


def test_registered_rule_is_used():
    RULES.register(Mystery, lambda m, shape, ctx: 3.0)
    try:
        lin = nn.Linear(3, 3)
        net = nn.Sequential(lin, nn.Sequential(nn.ReLU(), Mystery()))
        w = float(torch.linalg.svdvals(lin.weight.detach().double())[0])
        assert lipschitz_upper_bound(net, (3,), n_iter=1000, tol=1e-10) == pytest.approx(3 * w, rel=1e-4)
    finally:
        RULES.unregister(Mystery)
    assert Mystery not in RULES and lipschitz_upper_bound(net, (3,)) is None


def test_forward_hooks():
    lin = nn.Linear(4, 4)
    w = float(torch.linalg.svdvals(lin.weight.detach().double())[0])
    h = lin.register_forward_hook(lambda m, args, out: 2 * out)  # affine hook: counted exactly
    assert lipschitz_upper_bound(nn.Sequential(lin), (4,), n_iter=1000, tol=1e-10) == pytest.approx(2 * w, rel=1e-4)
    h.remove()
    lin.register_forward_hook(lambda m, args, out: torch.relu(out))  # not affine: no bound
    value, reason = explained(nn.Sequential(lin), (4,))
    assert value is None and "not affine" in reason
    act = nn.LeakyReLU(0.1)
    act.register_forward_hook(lambda m, args, out: 10 * out)  # the constant rule cannot see it
    value, reason = explained(nn.Sequential(nn.Linear(4, 4), act), (4,))
    assert value is None and "hooks" in reason


def test_max_pool_bound_is_tight_for_overlapping_windows():
    # a spike seen by every window that contains it: ||P x|| / ||x|| = sqrt(number of windows)
    for pool, shape, windows in ((nn.MaxPool1d(3, 1), (1, 9), 3), (nn.MaxPool2d(3, 2, padding=1), (1, 7, 7), 4),
                                 (nn.MaxPool2d(2), (2, 6, 6), 1)):
        bound = lipschitz_upper_bound(nn.Sequential(pool), shape)
        assert bound == pytest.approx(math.sqrt(windows))
        x = torch.zeros(1, *shape)
        x[(0, 0) + tuple(s // 2 for s in shape[1:])] = 1.0
        ratio = float(fd_ratios(pool, x, torch.zeros_like(x)))
        assert ratio == pytest.approx(math.sqrt(windows)) and ratio <= bound * (1 + 1e-6)


# ----------------------------------------------------------------------------------------- self-described networks
def run_structure(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``module``'s forward rebuilt from ``lipschitz_structure()``: the sum of its chains."""
    out = 0
    for chain in module.lipschitz_structure():
        h = x
        for _, m in chain:
            h = m(h)
        out = out + h
    return out


STRUCTURED = {
    "cnn": (lambda: build_discriminator("cnn", (3, 16, 16), width=0.0625), (3, 16, 16)),
    "dscnn": (lambda: build_discriminator("dscnn", (3, 16, 16), width=0.0625), (3, 16, 16)),
    "resnet": (lambda: build_discriminator("resnet", (3, 16, 16), width=0.0625), (3, 16, 16)),
    "resnet_mean": (lambda: build_discriminator("resnet", (3, 16, 16), width=0.0625, pool="mean"), (3, 16, 16)),
    "mlp": (lambda: build_discriminator("mlp", (5,), depth=3, hidden=16), (5,)),
    "mlp_g": (lambda: MLPGenerator(dim=2, z_dim=5, depth=2, hidden=8), (5,)),
    "dblock_identity": (lambda: DBlock(4, 4), (4, 6, 6)),
    "dblock_down": (lambda: DBlock(4, 6, downsample=True, hidden_channels=5), (4, 6, 6)),
    "dblock_optimized": (lambda: DBlockOptimized(3, 4), (3, 6, 6)),
}


@pytest.mark.parametrize("name", sorted(STRUCTURED))
def test_each_network_describes_its_forward(name):
    make, shape = STRUCTURED[name]
    net = make().eval()
    x = torch.randn(3, *shape)
    with torch.no_grad():
        assert torch.allclose(run_structure(net, x), net(x), rtol=1e-5, atol=1e-6)
    names = {n for n, _ in net.named_modules()}
    for chain in net.lipschitz_structure():
        for item, m in chain:
            assert item.startswith(":") or (item in names and net.get_submodule(item) is m), item


class Residual(nn.Module):
    """``x + lin(x)``, described for the Lipschitz code without importing it."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.lin = nn.Linear(n, n)

    def forward(self, x):
        return x + self.lin(x)

    def lipschitz_structure(self):
        return [[(":identity", nn.Identity())], [("lin", self.lin)]]


class DoubledResidual(Residual):
    def forward(self, x):
        return 2 * super().forward(x)


class Squash(nn.Module):
    lipschitz_affine = True  # wrongly: the map is not affine

    def forward(self, x):
        return torch.tanh(x)


def test_a_self_described_module_gets_a_bound():
    block = Residual(4)
    w = float(torch.linalg.svdvals(block.lin.weight.detach().double())[0])
    report = explain_upper_bound(nn.Sequential(block), (4,), n_iter=1000, tol=1e-10)
    assert report.value == pytest.approx(1 + w, rel=1e-4)
    assert [n for n, _ in report.parts] == ["0:identity", "0.lin", "0"]
    # a subclass with its own forward does not inherit the description
    value, reason = explained(DoubledResidual(4), (4,))
    assert value is None and "DoubledResidual" in reason


def test_a_declared_affine_module_is_checked():
    value, reason = explained(nn.Sequential(nn.Linear(3, 3), Squash()), (3,))
    assert value is None and "not affine" in reason
