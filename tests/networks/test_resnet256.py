"""The 256-px SNGAN ResNet (the GN-GAN code's CelebA-HQ network): parameter counts by formula from its layer list."""
from __future__ import annotations

import torch

from gannorm.networks import build_discriminator, build_generator


def gblock(cin: int, cout: int) -> int:
    """BN(cin) - conv3 - BN(cout) - conv3, with a 1x1 shortcut conv (every block upsamples)."""
    return 2 * cin + (9 * cin * cout + cout) + 2 * cout + (9 * cout * cout + cout) + (cin * cout + cout)


def dblock(cin: int, cout: int, down: bool) -> int:
    shortcut = cin * cout + cout if (cin != cout or down) else 0
    return (9 * cin * cout + cout) + (9 * cout * cout + cout) + shortcut


def test_the_256_px_networks_have_the_reference_parameter_counts():
    g_chans = [1024, 1024, 512, 512, 256, 128, 64]
    expected_g = (128 * 4 * 4 * 1024 + 4 * 4 * 1024) + sum(gblock(a, b) for a, b in zip(g_chans, g_chans[1:])) \
        + 2 * 64 + (9 * 64 * 3 + 3)
    optimized = (9 * 3 * 64 + 64) + (9 * 64 * 64 + 64) + (3 * 64 + 64)
    d_chans = [64, 128, 256, 512, 512, 1024, 1024]
    downs = [True, True, True, True, True, False]
    expected_d = optimized + sum(dblock(a, b, d) for a, b, d in zip(d_chans, d_chans[1:], downs)) + 1024 + 1
    G = build_generator("resnet", (3, 256, 256), z_dim=128, width=1.0)
    D = build_discriminator("resnet", (3, 256, 256), width=1.0)
    assert sum(p.numel() for p in G.parameters()) == expected_g == 37_135_107
    assert sum(p.numel() for p in D.parameters()) == expected_d == 43_401_409


def test_the_256_px_networks_map_shapes_and_condition():
    G = build_generator("resnet", (3, 256, 256), z_dim=16, width=1 / 32, num_classes=3)
    D = build_discriminator("resnet", (3, 256, 256), width=1 / 32, normalization="sn", num_classes=3)
    y = torch.tensor([0, 2])
    x = G(torch.randn(2, 16), y)
    assert x.shape == (2, 3, 256, 256) and D(x, y).shape == (2, 1)
