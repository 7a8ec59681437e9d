"""The SNGAN ResNet generators and discriminators (32, 48, 128, 256 px; 16 and 64 as extra variants).

One layout per resolution, each copied from a reference implementation (channel counts at
``width=1``; ``width`` multiplies every one of them, at least 1):

* **32 px** -- pytorch-gan-collections ``ResGenerator32``/``ResDiscriminator32`` (docs/networks.md).
  G: linear -> 4x4x256, GBlock 256->256 x3, BN-ReLU-conv3-tanh.
  D: Opt 3->128, 128->128 down, 128->128, 128->128, ReLU, sum pool, linear 128->1 **without
  bias** (as in that code).
* **48 px** -- mimicry ``sngan_48`` (docs/networks.md).
  G: linear -> 6x6x512, GBlocks 512->256->128->64, BN-ReLU-conv3-tanh.
  D: Opt 3->64, 64->128 down, 128->256 down, 256->512 down, 512->1024, ReLU, sum pool,
  linear 1024->1. D blocks have hidden = *in* channels (mimicry's and Chainer SNGAN's convention).
* **128 px** -- the official BSN ``no_gamma-ResNet`` (docs/networks.md).
  G: linear -> 4x4x1024 (no BN), GBlocks 1024->1024->512->256->128->64, BN-ReLU-conv3-tanh.
  D: Opt 3->64, 64->128, 128->256, 256->512, 512->1024 (all down), 1024->1024 (no down, but still
  a learnable 1x1 shortcut), ReLU, sum pool, linear 1024->1. D blocks have hidden = out channels.
* **256 px** -- the GN-GAN code's ``ResGenerator256``/``ResDiscriminator256`` (its CelebA-HQ 256 network).
  G: linear -> 4x4x1024 (no BN), GBlocks 1024->1024->512->512->256->128->64, BN-ReLU-conv3-tanh.
  D: Opt 3->64, 64->128, 128->256, 256->512, 512->512, 512->1024 (all down), 1024->1024 (identity
  shortcut), ReLU, sum pool, linear 1024->1; hidden = out channels.
* **16 px** (extra, for tiny CPU runs) -- the 32-px layout from a 2x2 bottom.
* **64 px** (extra) -- mimicry ``sngan_64`` (= Chainer SNGAN's 64-px ResNet).
  G: linear -> 4x4x1024, GBlocks 1024->512->256->128->64, BN-ReLU-conv3-tanh.
  D: Opt 3->64, 64->128, 128->256, 256->512, 512->1024 (all down), ReLU, sum pool,
  linear 1024->1; hidden = in channels.

Blocks are in :mod:`gannorm.networks.blocks`; upsampling is nearest x2 everywhere (mimicry uses
bilinear; the official code's "unpooling" is nearest). Initialisation (docs/networks.md): TF
``variance_scaling(fan_avg, uniform)`` with scale 2 for residual 3x3 convs and 1 for shortcut 1x1
convs, the linears and the last G conv; biases 0. D pools with a global **sum** (``pool="mean"``
gives the global average pooling of the GN-GAN ResNets). ``linear_bias`` overrides whether D's final
linear has a bias: ``None`` (default) keeps the layout's own (none at 16/32 px, one at 48/64/128 px);
``True`` gives the 32-px D the bias of the GN-GAN ResNet-32 D.

**Class-conditional** (``num_classes > 0``, as the projection cGAN's ResNets): the BNs of G's blocks
become ``ConditionalBatchNorm2d`` (the final BN before the output conv stays unconditional, as in the
projection cGAN code), and D's final linear a :class:`ProjectionHead` ``head`` (same linear and init,
plus a class embedding of the pooled features, Glorot uniform); both take ``(input, y)``.
``num_classes=0`` is the unconditional network bit for bit.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from .blocks import DBlock, DBlockOptimized, GBlock, variance_scaling_
from .blocks import channels as _ch
from .conditional import ProjectionHead, check_num_classes, glorot_uniform_, require_labels

POOLS = ("sum", "mean")


@dataclass(frozen=True)
class ResNetLayout:
    """Channel plan of one resolution (at ``width=1``)."""

    source: str
    g_channels: tuple[int, ...]  # channels after the linear, then the output of each up-block
    d_channels: tuple[int, ...]  # output of each D block; block 0 is the optimized (down) block
    d_down: tuple[bool, ...]  # per D block
    d_hidden: str = "out"  # hidden channels of D blocks: "in" or "out"
    d_shortcut_always: bool = False  # learnable 1x1 shortcut in every D block (official BSN)
    d_linear_bias: bool = True

    @property
    def g_blocks(self) -> int:
        return len(self.g_channels) - 1


_CIFAR = ResNetLayout("pytorch-gan-collections ResGenerator32/ResDiscriminator32",
                      (256, 256, 256, 256), (128, 128, 128, 128), (True, True, False, False),
                      d_linear_bias=False)
_STL = ResNetLayout("mimicry sngan_48", (512, 256, 128, 64), (64, 128, 256, 512, 1024),
                    (True, True, True, True, False), d_hidden="in")
_M64 = ResNetLayout("mimicry sngan_64", (1024, 512, 256, 128, 64), (64, 128, 256, 512, 1024),
                    (True, True, True, True, True), d_hidden="in")
_BSN128 = ResNetLayout("official BSN no_gamma-ResNet (128 px)", (1024, 1024, 512, 256, 128, 64),
                       (64, 128, 256, 512, 1024, 1024), (True, True, True, True, True, False),
                       d_shortcut_always=True)

_GN256 = ResNetLayout("GN-GAN code ResGenerator256/ResDiscriminator256 (256 px, CelebA-HQ and LSUN Church)",
                      (1024, 1024, 512, 512, 256, 128, 64), (64, 128, 256, 512, 512, 1024, 1024),
                      (True, True, True, True, True, True, False))

LAYOUTS: dict[int, ResNetLayout] = {16: _CIFAR, 32: _CIFAR, 48: _STL, 64: _M64, 128: _BSN128, 256: _GN256}
OFFICIAL_RESOLUTIONS = (32, 48, 128)


def layout(resolution: int) -> ResNetLayout:
    try:
        return LAYOUTS[resolution]
    except (KeyError, TypeError):
        raise ConfigError(f"the SNGAN ResNet supports resolutions {', '.join(map(str, LAYOUTS))} "
                         f"(official: {', '.join(map(str, OFFICIAL_RESOLUTIONS))}); got {resolution}") from None


class SNGANResNetGenerator(nn.Module):
    """z -> linear -> reshape [c0, bottom, bottom] -> GBlocks (x2 each) -> BN-ReLU-conv3 -> tanh.

    ``num_classes > 0``: conditional BNs in the blocks; forward ``(z, y)``.
    """

    def __init__(self, resolution: int = 32, channels: int = 3, width: float = 1.0, z_dim: int = 128,
                 num_classes: int = 0) -> None:
        super().__init__()
        self.num_classes = check_num_classes(num_classes)
        lay = layout(resolution)
        c = [_ch(n, width) for n in lay.g_channels]
        self.bottom = resolution // 2 ** lay.g_blocks
        self.c0, self.z_dim = c[0], z_dim
        self.linear = nn.Linear(z_dim, self.bottom * self.bottom * c[0])
        self.blocks = nn.Sequential(*(GBlock(cin, cout, upsample=True, num_classes=self.num_classes)
                                      for cin, cout in zip(c[:-1], c[1:])))
        self.bn = nn.BatchNorm2d(c[-1])
        self.conv = nn.Conv2d(c[-1], channels, 3, 1, padding=1)
        self.resolution, self.channels = resolution, channels
        self.data_shape = (channels, resolution, resolution)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for block in self.blocks:
            cast(GBlock, block).reset_parameters()
        variance_scaling_(self.linear, 1.0)
        variance_scaling_(self.conv, 1.0)
        self.bn.reset_parameters()

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        if self.num_classes:
            y = require_labels(self, y, z.shape[0])
        h = self.linear(z).view(-1, self.c0, self.bottom, self.bottom)
        for block in self.blocks:
            h = block(h, y)
        return torch.tanh(self.conv(torch.relu(self.bn(h))))


class SNGANResNetDiscriminator(nn.Module):
    """DBlockOptimized -> DBlocks -> ReLU -> global sum (or mean) pool -> linear 1.

    ``num_classes > 0``: a projection head ``head`` replaces ``linear``; forward ``(x, y)``.
    """

    def __init__(self, resolution: int = 32, channels: int = 3, width: float = 1.0, pool: str = "sum",
                 linear_bias: bool | None = None, num_classes: int = 0) -> None:
        super().__init__()
        self.num_classes = check_num_classes(num_classes)
        if pool not in POOLS:
            raise ConfigError(f"pool must be one of {', '.join(POOLS)}; got {pool!r}")
        if linear_bias is not None and not isinstance(linear_bias, bool):
            raise ConfigError(f"linear_bias must be true, false or null (the layout's own); got {linear_bias!r}")
        lay = layout(resolution)
        c = [_ch(n, width) for n in lay.d_channels]
        blocks: list[nn.Module] = [DBlockOptimized(channels, c[0])]
        for cin, cout, down in zip(c[:-1], c[1:], lay.d_down[1:]):
            hidden = cin if lay.d_hidden == "in" else cout
            blocks.append(DBlock(cin, cout, downsample=down, hidden_channels=hidden,
                                 learnable_shortcut=True if lay.d_shortcut_always else None))
        self.blocks = nn.Sequential(*blocks)
        bias = lay.d_linear_bias if linear_bias is None else linear_bias
        if self.num_classes:
            self.head = ProjectionHead(c[-1], self.num_classes, bias=bias)
        else:
            self.linear = nn.Linear(c[-1], 1, bias=bias)
        self.pool = pool
        self.resolution, self.channels = resolution, channels
        self.data_shape = (channels, resolution, resolution)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for block in self.blocks:
            cast("DBlock | DBlockOptimized", block).reset_parameters()
        if self.num_classes:
            variance_scaling_(self.head.linear, 1.0)
            glorot_uniform_(self.head.embed)
        else:
            variance_scaling_(self.linear, 1.0)

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        if self.num_classes:
            y = require_labels(self, y, x.shape[0])
        h = torch.relu(self.blocks(x))
        h = h.sum(dim=(2, 3)) if self.pool == "sum" else h.mean(dim=(2, 3))
        return self.head(h, y) if self.num_classes else self.linear(h)

    def lipschitz_structure(self) -> list[list[tuple[str, nn.Module]]]:
        """The forward as one ``(name, module)`` chain (see :mod:`gannorm.diagnostics.lipschitz`); a conditional
        D ends with its ``head``, which takes the labels too (no rule bounds it)."""
        last = ("head", self.head) if self.num_classes else ("linear", self.linear)
        return [[("blocks", self.blocks), (":relu", nn.ReLU()), (f":{self.pool}_pool", GlobalPool(self.pool)),
                 last]]


class GlobalPool(nn.Module):
    """``x.sum(dims)`` or ``x.mean(dims)`` over every dim after the channels: the discriminator's global
    pooling as a module, for :meth:`SNGANResNetDiscriminator.lipschitz_structure`. It is linear (operator
    norm ``sqrt(H W)`` for the sum, ``1 / sqrt(H W)`` for the mean), which ``lipschitz_affine`` declares."""

    lipschitz_affine = True

    def __init__(self, mode: str) -> None:
        super().__init__()
        if mode not in POOLS:
            raise ConfigError(f"pool must be one of {', '.join(POOLS)}; got {mode!r}")
        self.mode = mode

    def forward(self, x: Tensor) -> Tensor:
        dims = tuple(range(2, x.ndim))
        return x.sum(dim=dims) if self.mode == "sum" else x.mean(dim=dims)
