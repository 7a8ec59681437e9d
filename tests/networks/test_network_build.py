"""Every arch builds at every supported resolution with every normalization; shapes, range, backward."""
import pytest
import torch
from torch.nn.utils import parametrize

import gannorm
from gannorm.networks import NETWORKS, build_discriminator, build_generator

SHAPES = {
    "cnn": [(3, 16, 16), (3, 32, 32), (3, 48, 48), (3, 64, 64), (1, 16, 16)],
    "dscnn": [(3, 32, 32), (1, 16, 16)],
    "resnet": [(3, 16, 16), (3, 32, 32), (3, 48, 48), (3, 64, 64), (3, 128, 128), (3, 256, 256), (1, 16, 16)],
    "mlp": [(2,), (5,)],
    "biggan": [(3, 32, 32), (3, 64, 64), (3, 128, 128), (1, 32, 32)],
}
CASES = [(arch, shape) for arch, shapes in SHAPES.items() for shape in shapes]
NORM_OPTIONS = {"ssn": {"scale": 1.4}, "bssn": {"scale": 1.4}}  # strict_sn: input_shape is filled in


def test_every_registered_arch_is_covered():
    assert set(NETWORKS.names()) == set(SHAPES)


def test_every_supported_resolution_is_covered():
    for arch in ("resnet", "biggan"):
        spec = NETWORKS.get(arch)
        assert {s[1] for s in SHAPES[arch]} == set(spec.resolutions)
    assert {s[1] for s in SHAPES["cnn"]} >= set(NETWORKS.get("cnn").official_resolutions)


@pytest.mark.parametrize("method", gannorm.METHODS.names())
@pytest.mark.parametrize("arch,shape", CASES, ids=[f"{a}-{'x'.join(map(str, s))}" for a, s in CASES])
def test_build_forward_backward(arch, shape, method):
    width = {"mlp": 1 / 4, "biggan": 1 / 16}.get(arch, 1 / 8)
    G = build_generator(arch, shape, z_dim=16, width=width)
    D = build_discriminator(arch, shape, width=width, normalization=method,
                            normalization_options=NORM_OPTIONS.get(method))
    z = torch.randn(3, 16)
    x = G(z)
    assert x.shape == (3, *shape)
    if len(shape) == 3:
        assert float(x.detach().abs().max()) <= 1.0
    out = D(x)
    assert out.shape == (3, 1)
    assert torch.isfinite(out).all()
    (out.mean() + D(torch.randn(3, *shape)).mean()).backward()
    for name, p in [*G.named_parameters(), *D.named_parameters()]:
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    # every Conv/Linear of D, and nothing else, has its weight normalized (none: no layer)
    layers = {n for n, m in D.named_modules() if isinstance(m, gannorm.normalizations.NORMALIZABLE)}
    normalized = {n for n, m in D.named_modules() if parametrize.is_parametrized(m, "weight")}
    assert normalized == (layers if gannorm.METHODS.get(method).normalizes_weights else set())


def test_generators_are_never_normalized():
    G = build_generator("cnn", (3, 16, 16), width=1 / 8)
    assert not list(gannorm.normalized_layers(G))
    assert not gannorm.sigmas(G)


def test_strict_sn_gets_the_input_shape():
    D = build_discriminator("cnn", (1, 16, 16), width=1 / 8, normalization="strict_sn")
    p = D.features[0].parametrizations.weight[0]
    assert isinstance(p, gannorm.StrictSpectralNorm) and p.input_shape == (1, 16, 16)
    assert D.features[2].parametrizations.weight[0].input_shape == (8, 16, 16)  # after conv3 s1
    assert D.features[4].parametrizations.weight[0].input_shape == (8, 8, 8)  # after conv4 s2
    # an explicit input_shape wins
    D = build_discriminator("cnn", (1, 16, 16), width=1 / 8, normalization="strict_sn",
                            normalization_options={"input_shape": (1, 16, 16), "scale": 2.0})
    assert D.features[0].parametrizations.weight[0].scale == 2.0


def test_normalization_options_are_not_mutated():
    opts = {"scale": 1.2}
    build_discriminator("cnn", (3, 16, 16), width=1 / 8, normalization="strict_sn", normalization_options=opts)
    assert opts == {"scale": 1.2}


def test_every_d_layer_is_normalized():
    D = build_discriminator("resnet", (3, 32, 32), width=1 / 8, normalization="bssn",
                            normalization_options={"scale": 1.4})
    layers = [n for n, m in D.named_modules() if isinstance(m, gannorm.normalizations.NORMALIZABLE)]
    assert {n for n, _, _ in gannorm.normalized_layers(D)} == set(layers)
    assert len(layers) == 3 + 3 + 2 * 2 + 1  # opt block, down block, 2 identity-shortcut blocks, linear


@pytest.mark.parametrize("arch,shape", [("cnn", (3, 16, 16)), ("resnet", (3, 16, 16)), ("mlp", (2,))])
def test_width_scales_channels(arch, shape):
    small = sum(p.numel() for p in build_discriminator(arch, shape, width=1 / 8).parameters())
    big = sum(p.numel() for p in build_discriminator(arch, shape, width=1 / 4).parameters())
    assert small < big


def test_tiny_width_keeps_at_least_one_channel():
    G = build_generator("resnet", (3, 16, 16), z_dim=4, width=1e-6)
    D = build_discriminator("cnn", (3, 16, 16), width=1e-6)
    assert G(torch.randn(2, 4)).shape == (2, 3, 16, 16)
    assert D(torch.randn(2, 3, 16, 16)).shape == (2, 1)
    assert all(m.out_channels >= 1 for m in D.modules() if isinstance(m, torch.nn.Conv2d))


def test_mlp_options_and_depth():
    opts = {"depth": 16, "hidden": 32, "slope": 0.3}
    G = build_generator("mlp", (2,), z_dim=8, **opts)  # slope is D's option: accepted and ignored by G
    D = build_discriminator("mlp", (2,), width=0.5, **opts)
    linears = [m for m in D.modules() if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 17 and linears[0].out_features == 16 and linears[-1].out_features == 1
    assert all(m.negative_slope == 0.3 for m in D.modules() if isinstance(m, torch.nn.LeakyReLU))
    assert len([m for m in G.modules() if isinstance(m, torch.nn.ReLU)]) == 16
    assert not any(isinstance(m, (torch.nn.BatchNorm1d, torch.nn.Tanh)) for m in [*G.modules(), *D.modules()])
    # depth 0: a linear map
    assert len(list(build_discriminator("mlp", (2,), depth=0).parameters())) == 2


def test_mlp_defaults():
    G, D = build_generator("mlp", (2,)), build_discriminator("mlp", (2,))
    assert [m.out_features for m in G.modules() if isinstance(m, torch.nn.Linear)] == [128] * 4 + [2]
    assert [m.out_features for m in D.modules() if isinstance(m, torch.nn.Linear)] == [128] * 4 + [1]
    assert all(m.negative_slope == 0.2 for m in D.modules() if isinstance(m, torch.nn.LeakyReLU))
    with torch.no_grad():
        assert float(G(torch.randn(4, 128) * 100).abs().max()) > 1  # linear output for vectors


def test_the_legacy_classes_still_work():
    from gannorm.networks import SNGANCNNDiscriminator, SNGANCNNGenerator
    from gannorm.networks.sngan_cnn import SNGANCNNDiscriminator as D2
    assert D2 is SNGANCNNDiscriminator
    D = SNGANCNNDiscriminator(32, width=1 / 8)
    G = SNGANCNNGenerator(resolution=32, width=1 / 8)
    assert D(G(torch.randn(2, 128))).shape == (2, 1)
    assert SNGANCNNDiscriminator(resolution=48, channels=1).linear.in_features == 36 * 512
