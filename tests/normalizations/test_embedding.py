"""Normalizations on nn.Embedding (BigGAN's SNEmbedding) and on class-conditional D and G."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

import gannorm
from gannorm.normalizations import EMBEDDINGS, METHODS, NORMALIZABLE, StrictSpectralNorm, SpectralNorm, is_normalized
from gannorm.normalizations.model import takes_labels

OPTIONS = {"ssn": {"scale": 1.3}, "bssn": {"scale": 1.3}}
SHAPED = ("strict_sn", "dssn")  # the methods that take input_shape


def options(method, input_shape):
    opts = dict(OPTIONS.get(method, {}))
    if METHODS.get(method).needs_input_shapes:
        opts["input_shape"] = input_shape
    return opts


class MixedD(nn.Module):
    """Conv2d, ConvTranspose2d, Conv2d, Linear, Linear and an Embedding: a projection discriminator D(x, y)."""

    def __init__(self, classes: int = 5) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.up = nn.ConvTranspose2d(4, 4, 4, 2, 1)
        self.conv2 = nn.Conv2d(4, 4, 4, 2, 1)
        self.lin = nn.Linear(4 * 4 * 4, 8)
        self.out = nn.Linear(8, 1)
        self.embed = nn.Embedding(classes, 8)

    def forward(self, x, y):
        h = F.leaky_relu(self.conv1(x), 0.2)
        h = F.leaky_relu(self.up(h), 0.2)
        h = F.leaky_relu(self.conv2(h), 0.2)
        h = F.leaky_relu(self.lin(h.flatten(1)), 0.2)
        return self.out(h) + (self.embed(y) * h).sum(1, keepdim=True)


class CondG(nn.Module):
    """A conditional generator G(z, y): Embedding, Linear, BatchNorm, ConvTranspose2d, Conv2d."""

    def __init__(self, z_dim: int = 6, classes: int = 3) -> None:
        super().__init__()
        self.embed = nn.Embedding(classes, z_dim)
        self.fc = nn.Linear(z_dim, 8 * 2 * 2)
        self.bn0 = nn.BatchNorm2d(8)
        self.up = nn.ConvTranspose2d(8, 4, 4, 2, 1)
        self.bn1 = nn.BatchNorm2d(4)
        self.rgb = nn.Conv2d(4, 3, 3, padding=1)

    def forward(self, z, y):
        h = self.fc(z * self.embed(y)).view(-1, 8, 2, 2)
        h = F.relu(self.bn0(h))
        h = F.relu(self.bn1(self.up(h)))
        return torch.tanh(self.rgb(h))


def test_sn_of_an_embedding_is_its_largest_singular_value():
    torch.manual_seed(0)
    emb = gannorm.normalize(nn.Embedding(10, 6), "sn", warmup=500)
    raw = emb.parametrizations.weight.original.detach()
    sigma = float(torch.linalg.svdvals(raw)[0])  # the [num_embeddings, dim] matrix, as W.view(W.size(0), -1)
    assert gannorm.sigmas(emb)["Embedding/sigma"] == pytest.approx(sigma, rel=1e-5)
    emb.eval()
    assert float(torch.linalg.svdvals(emb.weight.detach())[0]) == pytest.approx(1.0, rel=1e-5)
    y = torch.tensor([3, 0, 9])
    torch.testing.assert_close(emb(y), raw[y] / sigma, rtol=1e-5, atol=1e-6)  # the lookup uses W / sigma


@pytest.mark.parametrize("method", ["bsn", "bssn", "strict_sn", "sn_gamma_layer"])
def test_the_other_sigma_methods_reduce_to_sn_on_an_embedding(method):
    torch.manual_seed(1)
    d = gannorm.normalize(MixedD(), method, warmup=500, **options(method, (3, 4, 4)))
    plist = d.embed.parametrizations.weight
    assert isinstance(plist[0], SpectralNorm)  # for a matrix sigma2 (transposed reshaping) = sigma1; no input shape
    raw = plist.original.detach()
    torch.testing.assert_close(torch.linalg.svdvals(raw), torch.linalg.svdvals(raw.t()))
    assert gannorm.sigmas(d)["embed/sigma"] == pytest.approx(float(torch.linalg.svdvals(raw)[0]), rel=1e-5)
    scale = OPTIONS.get(method, {}).get("scale", 1.0)
    d.eval()
    assert float(torch.linalg.svdvals(d.embed.weight.detach())[0]) == pytest.approx(scale, rel=1e-5)


def test_weight_norm_normalizes_each_embedding_vector():
    d = gannorm.normalize(MixedD(), "weight_norm")
    v = d.embed.parametrizations.weight.original.detach()
    g = d.embed.parametrizations.weight[0].g.detach()
    torch.testing.assert_close(d.embed.weight.detach(), g[:, None] * v / v.norm(dim=1, keepdim=True))


def test_method_layer_types_are_capabilities():
    for entry in METHODS.entries():
        types = entry.obj.layer_types
        assert set(NORMALIZABLE) <= set(types), entry.name
        assert (set(EMBEDDINGS) <= set(types)) == entry.obj.normalizes_weights or entry.name == "none", entry.name


def _inputs(seed=0, n=4):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 4, 4, generator=g), torch.randint(0, 5, (n,), generator=g)


def _expected_touched(spec):
    return spec.normalizes_weights and nn.Embedding in spec.layer_types


@pytest.mark.parametrize("method", METHODS.names())
def test_every_method_on_conv_linear_embedding_and_conv_transpose(method):
    spec = METHODS.get(method)
    torch.manual_seed(2)
    d = gannorm.normalize(MixedD(), method, **options(method, (3, 4, 4)))
    assert parametrize.is_parametrized(d.embed) == _expected_touched(spec)
    if spec.normalizes_weights:
        assert all(parametrize.is_parametrized(m, "weight") for m in (d.conv1, d.up, d.conv2, d.lin, d.out))
    touched = _expected_touched(spec) and method != "weight_norm"
    assert any(k.startswith("embed/") for k in gannorm.sigmas(d)) == touched
    x, y = _inputs()
    d.train()
    for _ in range(2):
        assert torch.isfinite(d(x, y)).all()
    d.eval()
    out = d(x, y).detach()
    # the output depends on the class through the (normalized) embedding
    assert not torch.allclose(out, d(x, (y + 1) % 5).detach())
    # state dict round trip: a fresh model normalized the same way computes the same function
    torch.manual_seed(3)
    fresh = gannorm.normalize(MixedD(), method, **options(method, (3, 4, 4)))
    fresh.load_state_dict(d.state_dict())
    fresh.eval()
    torch.testing.assert_close(fresh(x, y), out)
    if not spec.removable:
        with pytest.raises(ValueError, match="cannot be folded"):
            gannorm.remove_normalization(d)
        return
    gannorm.remove_normalization(d)
    assert not any(is_normalized(m) for m in d.modules())
    assert isinstance(d.embed.weight, nn.Parameter)
    torch.testing.assert_close(d(x, y).detach(), out, rtol=1e-5, atol=1e-6)
    d.train()
    torch.testing.assert_close(d(x, y).detach(), out, rtol=1e-5, atol=1e-6)  # a plain network in either mode


def test_feature_norms_leave_the_embedding_out_of_their_placement():
    d = gannorm.normalize(MixedD(), "batch_norm")
    with_bn = [name for name, m in d.named_modules() if hasattr(m, "bn")]
    assert with_bn == ["up", "conv2", "lin"]  # every layer but the first (conv1) and the last (out)


@pytest.mark.parametrize("method", METHODS.names())
def test_every_method_normalizes_a_conditional_generator(method):
    spec = METHODS.get(method)
    torch.manual_seed(4)
    G = gannorm.normalize(CondG(), method, **options(method, (6,)))
    assert parametrize.is_parametrized(G.embed) == _expected_touched(spec)
    z, y = torch.randn(4, 6), torch.tensor([0, 1, 2, 1])
    G.train()
    out = G(z, y)
    assert out.shape == (4, 3, 4, 4) and torch.isfinite(out).all()
    out.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in G.parameters() if p.grad is not None)
    G.eval()
    assert torch.isfinite(G(z, y)).all()


def test_strict_sn_on_a_generator_records_each_layer_input_shape_with_a_label():
    torch.manual_seed(5)
    G = gannorm.normalize(CondG(), "strict_sn", input_shape=(6,), warmup=300)
    up, rgb = G.up.parametrizations.weight[0], G.rgb.parametrizations.weight[0]
    assert isinstance(up, StrictSpectralNorm) and up.input_shape == (8, 2, 2)
    assert isinstance(rgb, StrictSpectralNorm) and rgb.input_shape == (4, 4, 4)
    # the transposed conv's operator norm on 8x2x2 inputs, from its dense matrix
    w = G.up.parametrizations.weight.original.detach()
    basis = torch.eye(8 * 2 * 2).view(-1, 8, 2, 2)
    dense = F.conv_transpose2d(basis, w, stride=2, padding=1).flatten(1)
    assert gannorm.sigmas(G)["up/sigma"] == pytest.approx(float(torch.linalg.matrix_norm(dense, 2)), rel=1e-4)
    assert isinstance(G.embed.parametrizations.weight[0], SpectralNorm)


def test_takes_labels_reads_the_forward_signature():
    class Optional(nn.Module):
        def forward(self, x, y=None):
            return x

    class Plain(nn.Module):
        def forward(self, x, scale=1.0):
            return x

    assert takes_labels(MixedD()) and takes_labels(CondG()) and takes_labels(Optional())
    assert not takes_labels(Plain()) and not takes_labels(nn.Sequential(nn.Linear(2, 2)))
