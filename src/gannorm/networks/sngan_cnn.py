"""The SNGAN "standard CNN" generator and discriminator (Miyato et al. 2018; official BSN code).

Layer lists from ``shared/reference/bssn.md`` section 2 (no_gamma-CNN/gan/network.py). ``width``
multiplies every channel count (1.0 is the official network) so tiny versions train on a CPU;
``channels`` is the number of image channels (1 for grayscale). TF 'SAME' padding is
``padding=1`` for both the k3/s1 and the k4/s2 layers on even inputs.
"""
from __future__ import annotations

from torch import Tensor, nn

RESOLUTIONS = {32: 4, 48: 6, 64: 8}  # image size -> bottom size mg (image = 8 * mg)


def _ch(c: int, width: float) -> int:
    return max(1, int(round(c * width)))


def _bottom(resolution: int) -> int:
    if resolution % 8 or resolution < 8:
        raise ValueError(f"the SNGAN CNN needs a resolution divisible by 8 (official: 32, 48, 64), got {resolution}")
    return resolution // 8


class SNGANCNNDiscriminator(nn.Module):
    """conv3 64 -> conv4/2 64 -> conv3 128 -> conv4/2 128 -> conv3 256 -> conv4/2 256 -> conv3 512 -> linear 1.

    LeakyReLU(0.1) after every conv; no normalization here (apply one with :func:`gannorm.normalize`).
    """

    def __init__(self, resolution: int = 32, channels: int = 3, width: float = 1.0, slope: float = 0.1) -> None:
        super().__init__()
        mg = _bottom(resolution)
        c = [_ch(n, width) for n in (64, 64, 128, 128, 256, 256, 512)]
        specs = [(channels, c[0], 3, 1), (c[0], c[1], 4, 2), (c[1], c[2], 3, 1), (c[2], c[3], 4, 2),
                 (c[3], c[4], 3, 1), (c[4], c[5], 4, 2), (c[5], c[6], 3, 1)]
        layers: list[nn.Module] = []
        for cin, cout, k, s in specs:
            layers += [nn.Conv2d(cin, cout, k, s, padding=1), nn.LeakyReLU(slope)]
        self.features = nn.Sequential(*layers)
        self.linear = nn.Linear(mg * mg * c[6], 1)
        self.resolution, self.channels = resolution, channels

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(self.features(x).flatten(1))


class SNGANCNNGenerator(nn.Module):
    """z -> linear mg*mg*512 -> BN-ReLU -> 3 x (deconv4/2 -> BN-ReLU) (256, 128, 64) -> deconv3 -> tanh."""

    def __init__(self, resolution: int = 32, channels: int = 3, width: float = 1.0, z_dim: int = 128) -> None:
        super().__init__()
        self.mg = _bottom(resolution)
        c = [_ch(n, width) for n in (512, 256, 128, 64)]
        self.c0, self.z_dim = c[0], z_dim
        self.linear = nn.Linear(z_dim, self.mg * self.mg * c[0])
        self.bn0 = nn.BatchNorm1d(self.mg * self.mg * c[0])
        blocks: list[nn.Module] = [nn.ReLU()]
        for cin, cout in zip(c[:-1], c[1:]):
            blocks += [nn.ConvTranspose2d(cin, cout, 4, 2, padding=1), nn.BatchNorm2d(cout), nn.ReLU()]
        blocks += [nn.ConvTranspose2d(c[-1], channels, 3, 1, padding=1), nn.Tanh()]
        self.blocks = nn.Sequential(*blocks)
        self.resolution, self.channels = resolution, channels

    def forward(self, z: Tensor) -> Tensor:
        h = self.bn0(self.linear(z)).view(-1, self.c0, self.mg, self.mg)
        return self.blocks(h)
