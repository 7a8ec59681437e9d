"""BigGAN: parameter counts against the reference's layer tables (counted here by formula, without the modules),
structure (attention, hierarchical z, shared embedding), initialisation and option errors."""
import math

import pytest
import torch
from torch import nn

from gannorm.errors import ConfigError
from gannorm.networks import build_discriminator, build_generator
from gannorm.networks.biggan import BigGANDiscriminator, BigGANGenerator
from gannorm.networks.conditional import (ConditionalBatchNorm2d, ProjectionHead, SelfAttention,
                                          SharedConditionalBatchNorm)

# The reference's tables (BigGAN-PyTorch G_arch / D_arch), in multiples of ch, written out again here.
# G: in, out, output resolution of each block.  D: in (0 = the image), out, output resolution, downsample.
G_TABLE = {32: ([4, 4, 4], [4, 4, 4], [8, 16, 32]),
           64: ([16, 16, 8, 4], [16, 8, 4, 2], [8, 16, 32, 64]),
           128: ([16, 16, 8, 4, 2], [16, 8, 4, 2, 1], [8, 16, 32, 64, 128])}
D_TABLE = {32: ([0, 4, 4, 4], [4, 4, 4, 4], [16, 8, 8, 8], [True, True, False, False]),
           64: ([0, 1, 2, 4, 8], [1, 2, 4, 8, 16], [32, 16, 8, 4, 4], [True, True, True, True, False]),
           128: ([0, 1, 2, 4, 8, 16], [1, 2, 4, 8, 16, 16], [64, 32, 16, 8, 4, 4], [True] * 5 + [False])}


def conv(k, cin, cout, bias=True):
    return k * k * cin * cout + (cout if bias else 0)


def attention(c):
    """theta, phi: c -> c/8; g: c -> c/2; o: c/2 -> c; all 1x1 without bias; plus the scalar gamma."""
    return 2 * conv(1, c, c // 8, False) + conv(1, c, c // 2, False) + conv(1, c // 2, c, False) + 1


def g_count(res, ch=64, z=128, classes=1000, shared=128, hier=True, attn=(64,), image=3):
    ins, outs, sizes = G_TABLE[res]
    slots = len(ins) + 1 if hier else 1
    chunk = z // slots if hier else 0
    cond = (shared if classes else 0) + chunk

    def bn(c):  # ccbn: two bias-free linears cond -> c; per-class tables; or a plain BN's gain and bias
        return 2 * cond * c if cond else (2 * classes * c if classes else 2 * c)

    n = classes * shared if classes and shared else 0
    n += (chunk if hier else z) * 16 * ch * ins[0] + 16 * ch * ins[0]  # linear to 4 x 4 x in_0, with bias
    for a, b, size in zip(ins, outs, sizes):
        a, b = a * ch, b * ch
        n += conv(3, a, b) + conv(3, b, b) + conv(1, a, b) + bn(a) + bn(b)
        n += attention(b) if size in attn else 0
    return n + 2 * ch * outs[-1] + conv(3, ch * outs[-1], image)  # output BN + conv to the image


def d_count(res, ch=64, classes=1000, attn=(64,), image=3):
    ins, outs, sizes, downs = D_TABLE[res]
    n = 0
    for a, b, size, down in zip(ins, outs, sizes, downs):
        a, b = (a * ch or image), b * ch
        n += conv(3, a, b) + conv(3, b, b) + (conv(1, a, b) if a != b or down else 0)
        n += attention(b) if size in attn else 0
    f = ch * outs[-1]
    return n + f + 1 + classes * f  # linear with bias + projection embedding


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def _meta(cls, *args, **kwargs):
    with torch.device("meta"):
        return cls(*args, **kwargs)


# (resolution, G kwargs, D kwargs, expected formula arguments)
SETTINGS = {
    "defaults-32": (32, {}, {}),
    "defaults-64": (64, {}, {}),
    "defaults-128": (128, {}, {}),
    # the reference's 128-px launch script: ch 96, dim_z 120, shared 128, hier, attention 64, ImageNet
    "launch-128": (128, {"width": 1.5, "z_dim": 120}, {"width": 1.5}),
    # its CIFAR script: ch 64, no shared embedding, no hier, attention 0, xavier, 10 classes
    "cifar": (32, {"num_classes": 10, "shared_dim": 0, "hier": False, "attention": 0, "weight_init": "xavier"},
              {"num_classes": 10, "attention": 0, "weight_init": "xavier"}),
}


def _formula_args(g_kw, d_kw):
    ch = round(64 * g_kw.get("width", 1.0))
    attn = () if g_kw.get("attention", 64) == 0 else (64,)
    g = dict(ch=ch, z=g_kw.get("z_dim", 128), classes=g_kw.get("num_classes", 1000),
             shared=g_kw.get("shared_dim", 128), hier=g_kw.get("hier", True), attn=attn)
    d = dict(ch=ch, classes=d_kw.get("num_classes", 1000), attn=attn)
    return g, d


@pytest.mark.parametrize("name", SETTINGS)
def test_parameter_counts_match_the_reference_tables(name):
    res, g_kw, d_kw = SETTINGS[name]
    g_kw = {"num_classes": 1000, **g_kw}
    d_kw = {"num_classes": 1000, **d_kw}
    G, D = _meta(BigGANGenerator, res, **g_kw), _meta(BigGANDiscriminator, res, **d_kw)
    g_args, d_args = _formula_args(g_kw, d_kw)
    assert n_params(G) == g_count(res, **g_args)
    assert n_params(D) == d_count(res, **d_args)


def test_known_totals():
    """The totals in docs/networks.md; the reference code's own printout at 128 px, ch 96, is G 70,433,988 and
    D 87,982,370, and the BigGAN paper's Table 1 lists 81.5 M (ch 64) and 173.5 M (ch 96) for G + D of the
    models without shared embedding and hierarchical z."""
    assert (g_count(32), d_count(32)) == (4_499_971, 4_460_801)
    assert (g_count(64), d_count(64)) == (31_933_956, 20_566_721)
    assert (g_count(128), d_count(128)) == (32_004_868, 39_448_258)
    assert (g_count(128, ch=96, z=120), d_count(128, ch=96)) == (70_433_988, 87_982_370)
    assert (g_count(32, classes=10, shared=0, hier=False, attn=()), d_count(32, classes=10, attn=())) == \
        (4_304_387, 4_207_361)
    assert round((g_count(128, shared=0, hier=False) + d_count(128)) / 1e6, 1) == 81.5
    assert round((g_count(128, ch=96, shared=0, hier=False) + d_count(128, ch=96)) / 1e6, 1) == 173.5


def test_the_builders_pass_the_options():
    G = build_generator("biggan", (3, 32, 32), z_dim=20, width=1 / 4, num_classes=10, shared_dim=8, attention=32)
    D = build_discriminator("biggan", (3, 32, 32), width=1 / 4, num_classes=10, attention=16, normalization="sn")
    assert n_params(G) == g_count(32, ch=16, z=20, classes=10, shared=8, attn=(32,))
    # D attention at 16 px: after the first block only (the actual output resolutions are 16, 8, 8, 8)
    assert n_params(D) == d_count(32, ch=16, classes=10, attn=(16,))
    assert [type(m) for m in D.blocks[0]][-1] is SelfAttention and all(len(b) == 1 for b in D.blocks[1:])


def test_attention_placement_follows_the_reference_defaults():
    def where(model):
        return [i for i, blocklist in enumerate(model.blocks) if any(isinstance(m, SelfAttention) for m in blocklist)]
    assert where(_meta(BigGANGenerator, 128, num_classes=5)) == [3]  # G at 64 px: after block 4 of 5
    assert where(_meta(BigGANDiscriminator, 128, num_classes=5)) == [0]  # D at 64 px: after its first block
    assert where(_meta(BigGANGenerator, 64, num_classes=5)) == [3]  # the last G block outputs 64 px
    assert where(_meta(BigGANDiscriminator, 64, num_classes=5)) == []  # D never is at 64 px at 64 px
    assert where(_meta(BigGANGenerator, 32, num_classes=5)) == [] == where(_meta(BigGANDiscriminator, 32))
    assert where(_meta(BigGANGenerator, 128, attention=[16, 128])) == [1, 4]
    assert where(_meta(BigGANGenerator, 128, attention=0)) == []


def test_hierarchical_latent_and_shared_embedding():
    torch.manual_seed(0)
    G = BigGANGenerator(32, width=1 / 8, z_dim=14, num_classes=4, shared_dim=6)  # 4 chunks of 3, 2 unused
    assert G.chunk == 3 and G.linear.in_features == 3 and G.shared.weight.shape == (4, 6)
    norms = [m for m in G.modules() if isinstance(m, SharedConditionalBatchNorm)]
    assert len(norms) == 6 and all(m.cond_dim == 6 + 3 for m in norms)
    G.eval()  # per-sample outputs
    z, y = torch.randn(2, 14), torch.tensor([1, 2])
    with torch.no_grad():
        base = G(z, y)
        # the two trailing entries are not used (as the reference, which shrinks dim_z to 12)
        z2 = z.clone()
        z2[:, 12:] += 5
        assert torch.equal(G(z2, y), base)
        # block 2's chunk (entries 6..8) reaches the output through block 2's norms only
        seen = {}
        hook = norms[2].register_forward_pre_hook(lambda m, args: seen.update(cond=args[1]))
        G(z, y)
        hook.remove()
        assert torch.equal(seen["cond"], torch.cat([G.shared(y), z[:, 6:9]], dim=1))
        z3 = z.clone()
        z3[:, 6:9] += 1
        assert not torch.allclose(G(z3, y), base)
        assert not torch.allclose(G(z, torch.tensor([0, 2]))[0], base[0])


def test_without_shared_embedding_and_unconditional():
    G = BigGANGenerator(32, width=1 / 8, num_classes=10, shared_dim=0, hier=False)
    norms = [m for m in G.modules() if isinstance(m, ConditionalBatchNorm2d)]
    assert len(norms) == 6 and all(m.gain_offset for m in norms) and not hasattr(G, "shared")
    assert float(norms[0].gain.weight.detach().abs().max()) > 0  # tables drawn by the init, gain = 1 + table
    U = BigGANGenerator(32, width=1 / 8, num_classes=0, hier=False)
    assert sum(type(m) is nn.BatchNorm2d and m.affine for m in U.modules()) == 7
    assert U(torch.randn(2, 128)).shape == (2, 3, 32, 32)
    H = BigGANGenerator(32, width=1 / 8, z_dim=8, num_classes=0)  # hier without classes: norms on the z chunks
    assert all(m.cond_dim == 2 for m in H.modules() if isinstance(m, SharedConditionalBatchNorm))
    D = BigGANDiscriminator(32, width=1 / 8, num_classes=0)
    assert not any(isinstance(m, (nn.Embedding, ProjectionHead)) for m in D.modules())
    assert D(torch.randn(2, 3, 32, 32)).shape == (2, 1)


def test_initialisation():
    torch.manual_seed(0)
    G = BigGANGenerator(32, width=1 / 4, num_classes=10)
    w = G.blocks[0][0].conv1.weight.detach().reshape(64, -1)  # 64 x 576: orthonormal rows
    assert torch.allclose(w @ w.T, torch.eye(64), atol=1e-4)
    e = G.shared.weight.detach()  # 10 x 128: orthonormal rows too
    assert torch.allclose(e @ e.T, torch.eye(10), atol=1e-4)
    assert float(G.blocks[0][0].conv1.bias.detach().abs().max()) > 0  # torch's default bias draw, as the reference
    bn = G.output_layer[0]
    assert torch.equal(bn.weight.detach(), torch.ones(64)) and float(bn.bias.detach().abs().max()) == 0
    D = BigGANDiscriminator(32, width=1 / 4, num_classes=10, weight_init="normal", attention=16)
    ws = torch.cat([m.weight.detach().flatten() for m in D.modules() if isinstance(m, nn.Conv2d)])
    assert float(ws.std()) == pytest.approx(0.02, rel=0.02)
    assert float(D.head.embed.weight.detach().std()) == pytest.approx(0.02, rel=0.2)
    assert all(float(m.gamma.detach()) == 0.0 for m in D.modules() if isinstance(m, SelfAttention))
    X = BigGANDiscriminator(32, width=1 / 4, num_classes=10, weight_init="xavier")
    c = X.blocks[1][0].conv1  # Glorot uniform: bound sqrt(6 / (fan_in + fan_out))
    bound = math.sqrt(6 / (64 * 9 + 64 * 9))
    assert float(c.weight.detach().abs().max()) <= bound and float(c.weight.detach().abs().max()) > 0.95 * bound


def test_option_errors():
    with pytest.raises(ConfigError, match="hier needs the shared class embedding"):
        build_generator("biggan", (3, 32, 32), num_classes=10, shared_dim=0)
    with pytest.raises(ConfigError, match="attention must be a resolution"):
        build_generator("biggan", (3, 32, 32), attention="64")
    with pytest.raises(ConfigError, match="weight_init must be one of orthogonal, normal, xavier"):
        build_discriminator("biggan", (3, 32, 32), weight_init="ortho")
    with pytest.raises(ConfigError, match="z_dim must be >= 6"):
        build_generator("biggan", (3, 128, 128), z_dim=5)
    with pytest.raises(ConfigError, match="hier must be true or false"):
        build_generator("biggan", (3, 32, 32), hier="yes")
    with pytest.raises(ValueError, match="supports resolutions 32, 64, 128"):
        build_generator("biggan", (3, 48, 48))
