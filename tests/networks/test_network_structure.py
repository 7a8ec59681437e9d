"""Structural facts of the reference layouts: pooling, blocks, shortcuts, bottoms, no batch coupling in D."""
import pytest
import torch
from torch import nn

from gannorm.networks import (DBlock, DBlockOptimized, GBlock, NETWORKS, SNGANResNetDiscriminator,
                              build_discriminator, build_generator)


def test_resnet_d_uses_global_sum_pooling():
    torch.manual_seed(0)
    d_sum = build_discriminator("resnet", (3, 32, 32), width=1 / 8)
    d_mean = build_discriminator("resnet", (3, 32, 32), width=1 / 8, pool="mean")
    d_mean.load_state_dict(d_sum.state_dict())
    assert d_sum.linear.bias is None  # the 32-px D (pytorch-gan-collections) has no bias in its last linear
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(d_sum(x), d_mean(x) * 8 * 8, rtol=1e-4, atol=1e-5)  # final map 8x8


@pytest.mark.parametrize("res,final", [(16, 4), (32, 8), (48, 3), (64, 2), (128, 4)])
def test_resnet_d_final_map_and_g_bottom(res, final):
    D = build_discriminator("resnet", (3, res, res), width=1 / 16)
    seen = {}
    D.blocks.register_forward_hook(lambda m, a, out: seen.update(shape=out.shape))
    with torch.no_grad():
        D(torch.randn(2, 3, res, res))
    assert seen["shape"][-1] == final
    G = build_generator("resnet", (3, res, res), width=1 / 16, z_dim=8)
    assert G.bottom * 2 ** len(G.blocks) == res
    assert G.bottom == {16: 2, 32: 4, 48: 6, 64: 4, 128: 4}[res]


def test_resnet_block_channels_follow_the_references():
    d48 = build_discriminator("resnet", (3, 48, 48))
    assert [type(b) for b in d48.blocks] == [DBlockOptimized] + [DBlock] * 4
    assert d48.blocks[1].c1.out_channels == 64  # mimicry: hidden = in channels
    assert [b.downsample for b in d48.blocks[1:]] == [True, True, True, False]
    d128 = build_discriminator("resnet", (3, 128, 128), width=1 / 16)
    assert d128.blocks[1].c1.out_channels == d128.blocks[1].c2.out_channels  # BSN: hidden = out channels
    assert [b.c2.out_channels for b in d128.blocks] == [4, 8, 16, 32, 64, 64]
    last = d128.blocks[-1]
    assert not last.downsample and last.c_sc is not None  # official: 1x1 shortcut even at 1024 -> 1024
    d32 = build_discriminator("resnet", (3, 32, 32))
    assert [b.c_sc is not None for b in d32.blocks] == [True, True, False, False]
    g128 = build_generator("resnet", (3, 128, 128), width=1 / 16)
    assert [b.c2.out_channels for b in g128.blocks] == [64, 32, 16, 8, 4]
    assert all(b.c_sc is not None for b in g128.blocks)


def test_gblock_upsamples_nearest_and_has_an_upsampled_shortcut():
    block = GBlock(2, 2)
    with torch.no_grad():
        for c in (block.c1, block.c2):
            c.weight.zero_()
        block.c_sc.weight.copy_(torch.eye(2).view(2, 2, 1, 1))
        x = torch.randn(1, 2, 3, 3)
        expected = x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
        assert torch.allclose(block(x), expected)


def test_dblock_shortcut_rules():
    assert DBlock(4, 4).c_sc is None
    assert DBlock(4, 4, downsample=True).c_sc is not None
    assert DBlock(4, 8).c_sc is not None
    assert DBlock(4, 4, learnable_shortcut=True).c_sc is not None
    with pytest.raises(ValueError, match="identity shortcut"):
        DBlock(4, 8, learnable_shortcut=False)
    x = torch.randn(2, 4, 8, 8)
    b = DBlock(4, 4, downsample=True)
    with torch.no_grad():
        b.c2.weight.zero_()
        b.c_sc.weight.copy_(torch.eye(4).view(4, 4, 1, 1))
        assert torch.allclose(b(x), nn.functional.avg_pool2d(x, 2), atol=1e-6)
    opt = DBlockOptimized(3, 4)
    assert opt(torch.randn(2, 3, 8, 8)).shape == (2, 4, 4, 4)


def test_cnn_bottom_bn_variants():
    g = build_generator("cnn", (3, 32, 32))
    assert isinstance(g.bn0, nn.BatchNorm1d) and g.bn0.num_features == 4 * 4 * 512
    g = build_generator("cnn", (3, 32, 32), width=1 / 8, bottom_bn="channel")
    assert isinstance(g.bn0, nn.BatchNorm2d) and g.bn0.num_features == 64
    assert g(torch.randn(2, 128)).shape == (2, 3, 32, 32)


@pytest.mark.parametrize("arch,shape", [("cnn", (3, 16, 16)), ("resnet", (3, 16, 16)), ("resnet", (3, 48, 48)),
                                        ("mlp", (2,))])
def test_discriminators_have_no_batch_coupling(arch, shape):
    D = build_discriminator(arch, shape, width=1 / 8, normalization="sn").train()
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in D.modules())
    x = torch.randn(4, *shape)
    with torch.no_grad():
        D.eval()
        full, single = D(x), D(x[1:2])
    assert torch.allclose(full[1:2], single, atol=1e-5)


def test_registry_entries():
    assert NETWORKS.names() == ["cnn", "dscnn", "resnet", "mlp", "biggan"]
    for e in NETWORKS.entries():
        assert e.description
    cnn, resnet, mlp = (NETWORKS.get(n) for n in ("cnn", "resnet", "mlp"))
    assert (cnn.kind, resnet.kind, mlp.kind) == ("image", "image", "vector")
    assert cnn.resolutions is None and cnn.resolution_multiple == 8 and cnn.official_resolutions == (32, 48, 64)
    assert resnet.resolutions == (16, 32, 48, 64, 128, 256) and resnet.official_resolutions == (32, 48, 128)
    assert mlp.options == {"depth": 4, "hidden": 128, "slope": 0.2}
    assert set(cnn.options) == {"slope", "bottom_bn", "extra_convs"}
    assert resnet.options == {"pool": "sum", "linear_bias": None}
    assert cnn.generator is not None and cnn.discriminator is not None
    biggan = NETWORKS.get("biggan")
    assert biggan.kind == "image" and biggan.resolutions == (32, 64, 128) and biggan.conditional
    assert biggan.options == {"attention": 64, "shared_dim": 128, "hier": True, "weight_init": "orthogonal"}
    assert all(NETWORKS.get(n).conditional for n in NETWORKS.names())


def test_constructors_are_usable_directly():
    D = SNGANResNetDiscriminator(16, channels=1, width=1 / 8)
    assert D(torch.randn(2, 1, 16, 16)).shape == (2, 1)


def test_cnn_d_extra_convs_deepen_each_stage():
    from gannorm.networks import build_discriminator
    base = build_discriminator("cnn", (1, 16, 16), width=0.25)
    deep = build_discriminator("cnn", (1, 16, 16), width=0.25, extra_convs=2)
    convs = lambda d: [m for m in d.modules() if isinstance(m, nn.Conv2d)]  # noqa: E731
    assert len(convs(base)) == 7 and len(convs(deep)) == 15
    # the extra convs are 3x3, stride 1, channel-preserving, right after a 3x3 conv of the official list
    added = [m for m in convs(deep) if m.in_channels == m.out_channels and m.kernel_size == (3, 3)]
    assert len(added) == 8 and all(m.stride == (1, 1) for m in added)
    assert deep(torch.randn(2, 1, 16, 16)).shape == (2, 1)
    with pytest.raises(ValueError, match="extra_convs"):
        build_discriminator("cnn", (1, 16, 16), extra_convs=-1)
